//! Engine scenarios on the simulation: the happy path and each fault the seed's pipeline
//! must survive, each checked against the seed's properties as well as its own story.
#![allow(clippy::unwrap_used)]

use ferry_core::alarm::Datapoint::{self, Breaching, NotBreaching};
use ferry_core::{Change, DeploymentStatus, EventKind, RunStatus, StageStatus};
use ferry_engine::ports::Ledger as _;
use ferry_engine::ports::{Clock, PortErrorKind, Store};
use ferry_testkit::pipelines::{SHOP, TINY, shop};
use ferry_testkit::{DeployResult, Outcome, Sim, invariants, junit, lcov};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

const SHA: &str = "4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c";
const SHA2: &str = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A world where everything passes: 12 unit tests at 85 % coverage, 5 integration tests.
fn healthy() -> Sim {
    let sim = Sim::new(SHOP);
    sim.executor.script(
        shop::UNIT,
        Outcome::exit(0)
            .junit(junit(12, 0))
            .coverage(lcov(85.0))
            .taking(secs(30)),
    );
    sim.executor.script(
        shop::INTEGRATION,
        Outcome::exit(0).junit(junit(5, 0)).taking(secs(20)),
    );
    sim.executor
        .script(shop::E2E, Outcome::exit(0).taking(secs(40)));
    sim
}

fn assert_invariants(sim: &Sim, view: &ferry_core::run::RunView) {
    let bad = invariants::after_run(sim, view);
    assert!(bad.is_empty(), "invariants violated:\n{}", bad.join("\n"));
    let bad = invariants::no_overlap(sim);
    assert!(bad.is_empty(), "invariants violated:\n{}", bad.join("\n"));
}

fn stage(view: &ferry_core::run::RunView, name: &str) -> StageStatus {
    Sim::stage_status(view, name).unwrap()
}

#[test]
fn happy_path_through_three_environments_with_approval() {
    let sim = healthy();
    sim.approve_after("production", Duration::from_secs(600));
    let view = sim.run(SHA);

    assert_eq!(view.status, RunStatus::Succeeded, "{:?}", view.reason);
    assert_eq!(sim.deployed_envs(view.id), shop::ENVIRONMENTS);
    let records = sim.deployments_of(view.id);
    assert_eq!(records.len(), 3);
    for d in &records {
        assert_eq!(d.status, DeploymentStatus::Succeeded, "{d:?}");
        assert_eq!(d.version, SHA);
        assert!((d.coverage_percentage - 85.0).abs() < 1e-9);
        assert!(d.unit_tests_passed);
        assert_eq!(d.previous_version, None);
        assert_eq!(d.artifact_digest, view.artifact.as_ref().unwrap().digest);
    }
    assert!(records[2].integration_tests_passed && records[2].e2e_tests_passed);
    for env in shop::ENVIRONMENTS {
        assert_eq!(sim.deployer(env).running().as_deref(), Some(SHA));
    }
    let kinds = sim.event_kinds(view.id);
    for k in [
        EventKind::ApprovalRequested,
        EventKind::ApprovalGranted,
        EventKind::RunSucceeded,
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    // The approval waited the 10 minutes the approver took, on the fake clock.
    let prod = view.stages.iter().find(|s| s.name == "production").unwrap();
    let approval = &prod.steps[0];
    assert!(
        approval
            .ended_at
            .unwrap()
            .since(approval.started_at.unwrap())
            >= secs(600)
    );
    assert_invariants(&sim, &view);

    // The next run sees the first as what ran before.
    sim.executor.script(shop::E2E, Outcome::exit(0));
    let second = sim.run(SHA2);
    assert_eq!(second.status, RunStatus::Succeeded);
    for d in sim.deployments_of(second.id) {
        assert_eq!(d.previous_version.as_deref(), Some(SHA), "{d:?}");
    }
    assert_eq!(
        sim.store
            .last_known_good("production")
            .unwrap()
            .unwrap()
            .version,
        SHA2
    );
    assert_invariants(&sim, &second);
}

/// A person on another thread approves through the store, as `ferry approve` would. The
/// engine is held inside its poll sleep until the approver has acted, so the fake clock
/// cannot run past the deadline meanwhile.
#[test]
fn an_approver_on_another_thread_lets_the_run_through() {
    let sim = healthy();
    let (waiting_tx, waiting_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let waiting_tx = Mutex::new(Some(waiting_tx));
    let done_rx = Mutex::new(done_rx);
    let store = sim.store.clone();
    sim.clock.on_advance(move |_| {
        let waiting = store
            .list_runs(10, true)
            .unwrap()
            .into_iter()
            .find(|r| r.status == RunStatus::AwaitingApproval);
        let tx = waiting
            .as_ref()
            .and_then(|_| waiting_tx.lock().unwrap().take());
        if let (Some(run), Some(tx)) = (waiting, tx) {
            tx.send(run.id).unwrap();
            done_rx
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(30))
                .unwrap();
        }
    });
    let view = std::thread::scope(|s| {
        let store = sim.store.clone();
        let clock = sim.clock.clone();
        s.spawn(move || {
            let id = waiting_rx.recv().unwrap();
            let d = ferry_core::approval::Decision {
                approved: true,
                by: "alice".into(),
                reason: None,
                at: clock.now(),
                digest: store.load_run(id).unwrap().artifact.map(|a| a.digest),
                void: None,
            };
            store.decide(id, "production", &d).unwrap();
            // A second decision is refused.
            assert_eq!(
                store.decide(id, "production", &d).map_err(|e| e.kind),
                Err(PortErrorKind::Conflict)
            );
            done_tx.send(()).unwrap();
        });
        sim.run(SHA)
    });
    assert_eq!(view.status, RunStatus::Succeeded, "{:?}", view.reason);
    let granted = sim
        .events(view.id)
        .into_iter()
        .find(|e| e.kind == EventKind::ApprovalGranted)
        .unwrap();
    assert_eq!(granted.data["by"], "alice");
    assert_invariants(&sim, &view);
}

#[test]
fn coverage_below_the_gate_deploys_nothing() {
    let sim = healthy();
    sim.approve_after("production", secs(1));
    sim.executor.script(
        shop::UNIT,
        Outcome::exit(0).junit(junit(12, 0)).coverage(lcov(79.5)),
    );
    let view = sim.run(SHA);

    assert_eq!(view.status, RunStatus::Failed);
    assert!(
        view.reason
            .as_deref()
            .unwrap()
            .contains("coverage 79.5% is below the minimum of 80%"),
        "{:?}",
        view.reason
    );
    assert_eq!(stage(&view, "build"), StageStatus::Failed);
    for env in shop::ENVIRONMENTS {
        assert_eq!(stage(&view, env), StageStatus::Skipped);
        assert_eq!(sim.deployer(env).running(), None);
    }
    assert!(sim.timeline.entries().is_empty());
    assert!(sim.deployments_of(view.id).is_empty());
    assert!(sim.event_kinds(view.id).contains(&EventKind::GateFailed));
    assert!(
        sim.artifacts.locations().is_empty(),
        "no artifact is built after a failed gate"
    );
    assert!(invariants::coverage_gate(&sim, view.id, Some(79.5), 80.0).is_empty());
    assert_invariants(&sim, &view);
}

#[test]
fn a_build_without_a_coverage_report_fails_the_gate() {
    let sim = healthy();
    sim.executor
        .script(shop::UNIT, Outcome::exit(0).junit(junit(3, 0)));
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Failed);
    assert!(
        view.reason
            .as_deref()
            .unwrap()
            .contains("did not write its coverage report"),
        "{:?}",
        view.reason
    );
    assert!(sim.timeline.entries().is_empty());
    assert_invariants(&sim, &view);
}

#[test]
fn a_failing_test_in_test_stops_promotion() {
    let sim = healthy();
    sim.approve_after("production", secs(1));
    sim.executor
        .script(shop::INTEGRATION, Outcome::exit(1).junit(junit(4, 1)));
    let view = sim.run(SHA);

    assert_eq!(view.status, RunStatus::Failed);
    assert_eq!(stage(&view, "test"), StageStatus::Failed);
    assert_eq!(stage(&view, "staging"), StageStatus::Skipped);
    assert_eq!(stage(&view, "production"), StageStatus::Skipped);
    assert!(
        view.reason
            .as_deref()
            .unwrap()
            .starts_with("test/integration:"),
        "{:?}",
        view.reason
    );
    assert_eq!(sim.deployed_envs(view.id), ["test"]);
    let records = sim.deployments_of(view.id);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].status, DeploymentStatus::Failed);
    assert!(!records[0].integration_tests_passed);
    assert_eq!(sim.deployer("staging").running(), None);
    assert_eq!(sim.deployer("production").running(), None);
    assert!(
        sim.event_kinds(view.id)
            .contains(&EventKind::DeploymentFailed)
    );
    assert_invariants(&sim, &view);
}

#[test]
fn an_approval_nobody_gives_times_out_and_production_is_untouched() {
    let sim = healthy();
    let view = sim.run(SHA);

    assert_eq!(view.status, RunStatus::Failed);
    assert_eq!(stage(&view, "staging"), StageStatus::Succeeded);
    assert_eq!(stage(&view, "production"), StageStatus::Failed);
    let reason = view.reason.clone().unwrap();
    assert!(
        reason.contains("approval timed out after 1h 00m"),
        "{reason}"
    );
    assert!(
        sim.event_kinds(view.id)
            .contains(&EventKind::ApprovalTimedOut)
    );
    assert_eq!(sim.deployed_envs(view.id), ["test", "staging"]);
    assert_eq!(sim.deployer("production").running(), None);
    let prod = view.stages.iter().find(|s| s.name == "production").unwrap();
    let waited = prod.steps[0]
        .ended_at
        .unwrap()
        .since(prod.steps[0].started_at.unwrap());
    assert_eq!(waited, secs(3600));
    assert_invariants(&sim, &view);
}

#[test]
fn a_decision_after_the_deadline_does_not_count() {
    let sim = healthy();
    sim.approve_after("production", secs(2 * 3600));
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Failed);
    assert!(
        sim.event_kinds(view.id)
            .contains(&EventKind::ApprovalTimedOut)
    );
    assert_eq!(sim.deployer("production").running(), None);
    assert_invariants(&sim, &view);
}

#[test]
fn a_rejection_stops_the_run_before_production_with_its_reason() {
    let sim = healthy();
    sim.reject_after("production", secs(300), "change freeze until Monday");
    let view = sim.run(SHA);

    assert_eq!(view.status, RunStatus::Failed);
    let reason = view.reason.clone().unwrap();
    assert!(
        reason.contains("rejected by approver@example.com: change freeze until Monday"),
        "{reason}"
    );
    let rejected = sim
        .events(view.id)
        .into_iter()
        .find(|e| e.kind == EventKind::ApprovalRejected)
        .unwrap();
    assert_eq!(rejected.environment.as_deref(), Some("production"));
    assert_eq!(sim.deployed_envs(view.id), ["test", "staging"]);
    assert_eq!(sim.deployer("production").running(), None);
    assert!(
        sim.deployments_of(view.id)
            .iter()
            .all(|d| d.environment != "production")
    );
    assert_invariants(&sim, &view);
}

#[test]
fn a_transient_deployer_failure_is_retried_after_one_then_two_seconds() {
    let sim = healthy();
    sim.approve_after("production", secs(1));
    sim.deployer("test")
        .taking(Duration::ZERO)
        .fail_transiently(2);
    let view = sim.run(SHA);

    assert_eq!(view.status, RunStatus::Succeeded, "{:?}", view.reason);
    let calls = sim.timeline.into_env("test");
    assert_eq!(calls.len(), 3);
    assert!(matches!(calls[0].result, DeployResult::Transient(_)));
    assert!(matches!(calls[1].result, DeployResult::Transient(_)));
    assert_eq!(calls[2].result, DeployResult::Succeeded);
    // Seed §6.2: 3 attempts, waiting 1 s then 2 s.
    assert_eq!(calls[1].start.since(calls[0].end), secs(1));
    assert_eq!(calls[2].start.since(calls[1].end), secs(2));
    let notes = sim.observer.notes_of(view.id);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("retrying in 1.0s (attempt 2)")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("retrying in 2.0s (attempt 3)")),
        "{notes:?}"
    );
    assert_eq!(
        sim.deployments_of(view.id).len(),
        3,
        "retries stay inside one deployment"
    );
    assert_invariants(&sim, &view);
}

#[test]
fn a_deployer_failing_transiently_three_times_fails_the_stage() {
    let sim = healthy();
    sim.deployer("staging")
        .taking(Duration::ZERO)
        .fail_transiently(5);
    let view = sim.run(SHA);

    assert_eq!(view.status, RunStatus::Failed);
    assert_eq!(stage(&view, "staging"), StageStatus::Failed);
    assert_eq!(
        sim.timeline.into_env("staging").len(),
        3,
        "three attempts, no fourth"
    );
    assert!(
        view.reason.as_deref().unwrap().contains("busy"),
        "{:?}",
        view.reason
    );
    let staging = sim
        .deployments_of(view.id)
        .into_iter()
        .find(|d| d.environment == "staging")
        .unwrap();
    assert_eq!(staging.status, DeploymentStatus::Failed);
    assert_eq!(sim.deployer("production").running(), None);
    assert_invariants(&sim, &view);
}

#[test]
fn a_permanent_deployer_failure_is_not_retried() {
    let sim = healthy();
    sim.deployer("test")
        .fail_permanently(Some("permission denied"));
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Failed);
    assert_eq!(sim.timeline.into_env("test").len(), 1);
    assert!(
        view.reason
            .as_deref()
            .unwrap()
            .contains("permission denied")
    );
    assert_invariants(&sim, &view);
}

/// OWASP CI/CD-SEC-9: the artifact is replaced between test and staging; staging refuses
/// it and its deployer is never called.
#[test]
fn a_tampered_artifact_is_refused() {
    let sim = healthy();
    sim.approve_after("production", secs(1));
    let artifacts = sim.artifacts.clone();
    sim.executor.script(
        shop::INTEGRATION,
        Outcome::exit(0)
            .junit(junit(5, 0))
            .also(move || artifacts.tamper_all()),
    );
    let view = sim.run(SHA);

    assert_eq!(view.status, RunStatus::Failed);
    assert_eq!(stage(&view, "test"), StageStatus::Succeeded);
    assert_eq!(stage(&view, "staging"), StageStatus::Failed);
    let reason = view.reason.clone().unwrap();
    assert!(
        reason.contains("changed since it was built") && reason.contains("refusing to deploy"),
        "{reason}"
    );
    assert_eq!(sim.deployed_envs(view.id), ["test"]);
    assert_eq!(sim.deployer("staging").running(), None);
    assert_invariants(&sim, &view);
}

#[test]
fn a_deployer_reporting_another_version_fails_the_stage() {
    let sim = healthy();
    sim.approve_after("production", secs(1));
    sim.deployer("staging").misreport(Some("0000000000bad"));
    let view = sim.run(SHA);

    assert_eq!(view.status, RunStatus::Failed);
    assert_eq!(stage(&view, "staging"), StageStatus::Failed);
    let reason = view.reason.clone().unwrap();
    assert!(
        reason.contains(&format!(
            "after deploying {SHA} the environment reports 0000000000bad running"
        )),
        "{reason}"
    );
    assert_eq!(sim.deployer("production").running(), None);
    let staging = sim
        .deployments_of(view.id)
        .into_iter()
        .find(|d| d.environment == "staging")
        .unwrap();
    assert_eq!(staging.status, DeploymentStatus::Failed);
    assert_invariants(&sim, &view);
}

/// 2 breaching datapoints of the last 3 put the alarm in ALARM; the healthy datapoints
/// the probe would give afterwards do not bring the stage back (invariant 6).
#[test]
fn an_alarm_in_the_monitor_window_fails_the_stage_and_it_stays_failed() {
    let sim = healthy();
    sim.approve_after("production", secs(1));
    sim.probe.script(
        shop::STAGING_ALARM,
        [NotBreaching, Breaching, NotBreaching, Breaching],
    );
    sim.probe.then(shop::STAGING_ALARM, NotBreaching);
    let view = sim.run(SHA);

    assert_eq!(view.status, RunStatus::Failed);
    assert_eq!(stage(&view, "staging"), StageStatus::Failed);
    let reason = view.reason.clone().unwrap();
    assert!(
        reason.contains("alarm `staging-health` went to ALARM (2 breaching"),
        "{reason}"
    );
    let samples = sim.probe.samples_of(shop::STAGING_ALARM);
    assert_eq!(
        samples.len(),
        4,
        "the window fails at the datapoint that raised the alarm"
    );
    assert_eq!(
        samples[3].at.since(samples[0].at),
        secs(6),
        "one datapoint per 2 s period"
    );
    assert_eq!(sim.deployer("production").running(), None);
    assert_eq!(
        sim.store.load_run(view.id).unwrap().status,
        RunStatus::Failed
    );
    assert_invariants(&sim, &view);
}

#[test]
fn one_breaching_datapoint_of_three_is_not_an_alarm() {
    let sim = healthy();
    sim.approve_after("production", secs(1));
    sim.probe.script(
        shop::STAGING_ALARM,
        [
            Breaching,
            NotBreaching,
            NotBreaching,
            Breaching,
            NotBreaching,
        ],
    );
    sim.probe
        .script(shop::PRODUCTION_ALARM, [Datapoint::Missing; 3]);
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Succeeded, "{:?}", view.reason);
    assert_eq!(
        sim.probe.samples_of(shop::STAGING_ALARM).len(),
        11,
        "20 s window, a datapoint every 2 s"
    );
    assert_invariants(&sim, &view);
}

#[test]
fn cancelling_during_the_build_cancels_the_run() {
    let sim = healthy();
    sim.cancel_after(secs(5)); // the unit tests take 30 s
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Cancelled);
    assert_eq!(view.reason.as_deref(), Some("cancelled by the user"));
    assert!(sim.timeline.entries().is_empty());
    assert!(sim.event_kinds(view.id).contains(&EventKind::RunCancelled));
    assert_invariants(&sim, &view);
}

#[test]
fn cancelling_while_waiting_for_approval_cancels_the_run() {
    let sim = healthy();
    // The build and test stages take ~2 min; the approval waits up to 1 h.
    sim.cancel_after(secs(30 * 60));
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Cancelled, "{:?}", view.reason);
    assert_eq!(stage(&view, "production"), StageStatus::Cancelled);
    assert_eq!(sim.deployer("production").running(), None);
    assert_invariants(&sim, &view);
}

/// BUG (ferry-engine, driver.rs `monitor`): a cancel that arrives during a monitor window
/// ends the run `failed` ("staging/monitor: cancelled by the user"), not `cancelled`: the
/// monitor returns `StepOutcome::failed("cancelled by the user")`, which the core treats
/// as a failed step. Every other wait (lease, approval, between steps) ends `cancelled`.
#[test]
fn cancelling_during_a_monitor_window_cancels_the_run() {
    let sim = healthy();
    // test (1 s deploy + 20 s) and staging's deploy and e2e (1 s + 40 s) end at ~92 s;
    // staging's monitor window runs from there for 20 s.
    sim.cancel_after(secs(100));
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Cancelled, "{:?}", view.reason);
}

#[test]
fn a_store_failure_mid_run_stops_the_run_and_nothing_is_deployed_after_it() {
    let sim = healthy();
    sim.approve_after("production", secs(1));
    // The batch that records the intent to deploy to staging cannot be committed.
    sim.store.fail_apply_if(1, |_, changes| {
        changes
            .iter()
            .any(|c| matches!(c, Change::DeploymentStarted(d) if d.environment == "staging"))
    });
    sim.source.ensure(SHA);
    let engine = sim.engine();
    let run = engine.queue(SHA, "sim", "sim").unwrap();
    let id = run.id();
    let err = engine.drive(run).unwrap_err();

    assert_eq!(err.kind, PortErrorKind::Unavailable);
    assert_eq!(
        sim.deployed_envs(id),
        ["test"],
        "staging's deployer must not be called"
    );
    assert_eq!(sim.deployer("staging").running(), None);
    // The store holds the run as of its last committed batch (a crash, for reconcile).
    let stored = sim.store.load_run(id).unwrap();
    assert_eq!(Some(&stored), sim.observer.last_view(id).as_ref());
    assert_eq!(stored.status, RunStatus::Running);
    assert_eq!(stage(&stored, "test"), StageStatus::Succeeded);
    let failed = sim
        .store
        .applies()
        .into_iter()
        .find(|a| a.error.is_some())
        .unwrap();
    assert!(
        sim.timeline
            .entries()
            .iter()
            .all(|e| e.start_tick < failed.tick)
    );
    assert!(invariants::order(&sim, id).is_empty());
    // Nothing was leased or left behind.
    assert_eq!(sim.store.lease("staging"), None);
    assert_eq!(sim.store.lease("test"), None);
}

#[test]
fn a_store_that_goes_away_for_good_stops_the_run_at_once() {
    let sim = healthy();
    // Queued, lint started, lint ended; the intent to start the unit tests is refused.
    sim.store.fail_apply_after(3, u32::MAX);
    let err = sim.try_run(SHA).unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Unavailable);
    assert!(sim.timeline.entries().is_empty());
    assert_eq!(
        sim.executor.calls().len(),
        1,
        "no step starts once the store is gone"
    );
}

#[test]
fn an_unknown_revision_is_not_found_and_nothing_is_recorded() {
    let sim = healthy();
    let err = sim.queue("does-not-exist").unwrap_err();
    assert_eq!(err.kind, PortErrorKind::NotFound);
    assert!(sim.store.list_runs(10, false).unwrap().is_empty());
}

#[test]
fn a_failed_checkout_fails_the_run_before_any_step() {
    let sim = healthy();
    sim.source
        .fail_checkout(Some(ferry_engine::ports::PortError::permanent("disk full")));
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Failed);
    assert!(
        view.reason
            .as_deref()
            .unwrap()
            .contains("could not check out the commit: disk full")
    );
    assert!(sim.executor.calls().is_empty());
    assert!(sim.timeline.entries().is_empty());
    assert_invariants(&sim, &view);
}

/// DESIGN invariant 7: untrusted commit text reaches steps and deployers only as
/// environment variables, never inside the command.
#[test]
fn commit_text_reaches_steps_only_as_variables() {
    let sim = healthy();
    sim.approve_after("production", secs(1));
    let evil = "fix\"; rm -rf / #`reboot` $(id)";
    sim.source
        .add(SHA, evil, "Mallory $(whoami) <m@example.com>");
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Succeeded, "{:?}", view.reason);
    let yaml_commands = [shop::LINT, shop::UNIT, shop::INTEGRATION, shop::E2E];
    for call in sim.executor.calls() {
        assert!(
            yaml_commands.contains(&call.command.as_str()),
            "{}",
            call.command
        );
        assert_eq!(call.env["FERRY_COMMIT_MESSAGE"], evil);
        assert_eq!(call.env["FERRY_COMMIT_SHA"], SHA);
    }
    for call in sim.timeline.entries() {
        assert_eq!(call.request.env["FERRY_COMMIT_MESSAGE"], evil);
        assert_eq!(call.request.env["FERRY_ENV"], call.environment);
    }
}

/// DESIGN invariant 2: the environment's lease is held from before the deploy until the
/// stage ends, and let go after.
#[test]
fn the_environment_lease_is_held_for_the_whole_stage() {
    let sim = healthy();
    sim.approve_after("production", secs(1));
    let seen = Arc::new(Mutex::new(None));
    let (store, seen2) = (sim.store.clone(), seen.clone());
    sim.executor.script(
        shop::INTEGRATION,
        Outcome::exit(0).junit(junit(5, 0)).also(move || {
            *seen2.lock().unwrap() = store.lease("test");
        }),
    );
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Succeeded);
    let held = seen.lock().unwrap().clone().unwrap();
    assert_eq!((held.run, held.holder.as_str()), (view.id, "sim"));
    for env in shop::ENVIRONMENTS {
        assert_eq!(sim.store.lease(env), None, "{env} is let go");
    }
}

/// The lease heartbeat runs at the real clock's pace; on the fake clock a 40 s step
/// passes in no real time, so staging's lease expires and another run takes it, as it
/// would for real if renewals failed (store locked or gone) for longer than `lease_ttl`.
/// The run must notice at the next step boundary and stop, not carry on in an
/// environment someone else may be deploying to (DESIGN invariant 2).
#[test]
fn a_run_that_lost_its_environment_lease_stops() {
    let sim = healthy();
    sim.approve_after("production", secs(1));
    let store = sim.store.clone();
    let clock = sim.clock.clone();
    let stolen = Arc::new(Mutex::new(None));
    let stolen2 = stolen.clone();
    sim.probe.script(shop::STAGING_ALARM, []);
    // A second run (queued, never driven) takes staging's lease once it has expired.
    let intruder = sim.queue_other();
    sim.executor.script(
        shop::E2E,
        Outcome::exit(0).taking(secs(40)).also(move || {
            let want = ferry_engine::ports::Lease {
                environment: "staging".into(),
                run: intruder,
                holder: "intruder".into(),
                expires_at: clock.now().plus(secs(30)),
            };
            *stolen2.lock().unwrap() = Some(store.acquire_lease(&want, clock.now()).unwrap());
        }),
    );
    let view = sim.run(SHA);
    assert!(
        stolen.lock().unwrap().as_ref().unwrap().is_ok(),
        "the lease had expired"
    );
    assert_eq!(view.status, RunStatus::Failed, "{:?}", view.reason);
    let reason = view.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("lost the lease on environment staging"),
        "{reason}"
    );
    assert!(
        sim.store
            .all_deployments()
            .iter()
            .all(|d| d.record.environment != "production"),
        "nothing may be deployed after the lease was lost"
    );
}

/// Deployment ids are `{environment}#{start millis}`: two runs that deploy to one
/// environment in the same millisecond (here nothing takes time) must still get two ids.
/// (Found by this kit: the second run used to die with a Conflict on `test#<millis>`;
/// the engine now starts a deployment one millisecond past the newest one.)
#[test]
fn deployment_ids_are_unique_across_runs_in_the_same_millisecond() {
    let sim = Sim::new(TINY);
    for env in ["test", "production"] {
        sim.deployer(env).taking(Duration::ZERO);
    }
    let first = sim.run(SHA);
    assert_eq!(first.status, RunStatus::Succeeded);
    let second = sim.try_run(SHA2).unwrap();
    assert_eq!(second.status, RunStatus::Succeeded, "{:?}", second.reason);
    let ids: Vec<String> = sim
        .store
        .all_deployments()
        .into_iter()
        .map(|d| d.record.deployment_id)
        .collect();
    assert_eq!(ids.len(), 4);
    assert_eq!(
        ids.iter().collect::<std::collections::BTreeSet<_>>().len(),
        4,
        "{ids:?}"
    );
    let bad = invariants::order(&sim, second.id);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// BUG (ferry-engine, driver.rs `deploy`): to keep ids unique the engine starts a
/// deployment at "newest start + 1 ms" when the clock has not moved past it, but it ends
/// the step, the stage and the record at the clock's `now`: the deploy step, its stage
/// and the deployment record of the second run end 1 ms before they start.
#[test]
fn a_bumped_deployment_does_not_end_before_it_starts() {
    let sim = Sim::new(TINY);
    for env in ["test", "production"] {
        sim.deployer(env).taking(Duration::ZERO);
    }
    sim.run(SHA);
    let second = sim.run(SHA2);
    let bad = invariants::consistency(&sim, &second);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn runs_at_different_instants_do_not_collide() {
    let sim = Sim::new(TINY);
    let first = sim.run(SHA);
    let second = sim.run(SHA2);
    assert_eq!(
        (first.status, second.status),
        (RunStatus::Succeeded, RunStatus::Succeeded)
    );
    assert_invariants(&sim, &second);
    assert_eq!(sim.store.deployments(Some("test"), 10).unwrap().len(), 2);
}

trait QueueOther {
    fn queue_other(&self) -> ferry_core::RunId;
}

impl QueueOther for Sim {
    /// Queues a run of another commit without driving it.
    fn queue_other(&self) -> ferry_core::RunId {
        self.source.ensure(SHA2);
        self.queue(SHA2).unwrap().id()
    }
}

#[test]
fn the_fake_clock_makes_hours_pass_in_no_time() {
    let sim = healthy();
    let started = std::time::Instant::now();
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Failed); // nobody approved within the hour
    assert!(sim.elapsed() > secs(3600));
    assert!(started.elapsed() < secs(10));
    assert!(!sim.cancel.load(Ordering::SeqCst));
}

/// BUG (ferry-engine, driver.rs; DESIGN invariant 2 "newer runs supersede older ones
/// waiting for the same environment"): nothing ever supersedes a run, so an older run
/// that waits for its production approval while a newer run goes all the way deploys
/// its older commit over the newer one. Here run 1 (commit SHA) waits for approval; run
/// 2 (commit SHA2, queued later) is driven to the end meanwhile; then run 1 is approved
/// and production ends up running the older SHA. Expected: run 1 `superseded` and
/// production left at SHA2.
#[test]
fn an_older_run_does_not_replace_a_newer_version() {
    let sim = healthy();
    sim.approve_after("production", Duration::ZERO);
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let go_tx = Mutex::new(Some(go_tx));
    let done_rx = Mutex::new(done_rx);
    let store = sim.store.clone();
    // The first time run 1 waits for approval, hold it there until run 2 has finished.
    sim.clock.on_advance(move |_| {
        let waiting = store
            .load_run(ferry_core::RunId(1))
            .is_ok_and(|v| v.status == RunStatus::AwaitingApproval);
        // Take the sender out first: the lock must not be held while run 2 runs (its
        // clock moves call this hook too).
        let tx = if waiting {
            go_tx.lock().unwrap().take()
        } else {
            None
        };
        if let Some(tx) = tx {
            tx.send(()).unwrap();
            done_rx
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(60))
                .unwrap();
        }
    });
    let (older, newer) = std::thread::scope(|s| {
        let sim = &sim;
        let newer = s.spawn(move || {
            go_rx.recv().unwrap();
            let v = sim.run(SHA2);
            done_tx.send(()).unwrap();
            v
        });
        let older = sim.run(SHA);
        (older, newer.join().unwrap())
    });
    assert_eq!(newer.status, RunStatus::Succeeded, "{:?}", newer.reason);
    assert_eq!(
        sim.deployer("production").running().as_deref(),
        Some(SHA2),
        "run {} (older commit, {:?}) replaced run {}'s newer commit in production",
        older.id,
        older.status,
        newer.id
    );
}

/// BUG (ferry-core, run.rs `end_from`): a cancelled (or superseded) stage is announced
/// with a `stage_failed` event ("stage build failed: cancelled by the user"), and a
/// superseded run with `run_cancelled`: notifications derived from events report a
/// failure for a user's cancel, and there is no event kind for superseded at all.
#[test]
fn a_cancelled_stage_is_not_announced_as_failed() {
    let sim = healthy();
    sim.cancel_after(secs(5));
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Cancelled);
    assert_eq!(stage(&view, "build"), StageStatus::Cancelled);
    let kinds = sim.event_kinds(view.id);
    assert!(!kinds.contains(&EventKind::StageFailed), "{kinds:?}");
}
