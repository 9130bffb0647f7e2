//! Property tests over the engine simulation with random injected faults: random exit
//! codes and durations per step, random coverage, transient / permanent / lying
//! deployers, a tampered artifact, approvals given, refused or never given, random alarm
//! datapoints, the store going away mid-run; and two runs driven at once on one world.
//! After every run the seed's properties (§12) and DESIGN.md's invariants must hold, and
//! the run must end the way a small independent model of the pipeline says it should.
#![allow(clippy::unwrap_used)]

use ferry_core::alarm::Datapoint;
use ferry_core::run::RunView;
use ferry_core::{RunStatus, StageStatus, Timestamp};
use ferry_engine::ports::{PortError, PortErrorKind, Store};
use ferry_testkit::pipelines::{SHOP, shop};
use ferry_testkit::{Outcome, START, Sim, invariants, junit, lcov};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

const MIN_COVERAGE: u32 = 80;
/// The approval timeout of the SHOP pipeline.
const APPROVAL_TIMEOUT: u64 = 3600;
/// Datapoints a 20 s monitor window with a 2 s period takes (at 0, 2, …, 20 s).
const WINDOW_SAMPLES: usize = 11;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeployFault {
    None,
    Transient(u32),
    Permanent,
    WrongVersion,
    CurrentVersionFails,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArtifactFault {
    None,
    /// The artifact's bytes change after the test stage's tests.
    TamperAfterTest,
    /// Packing the artifact fails.
    PackageFails,
    /// Reading the artifact's digest fails (before the first deployment).
    DigestFails,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Approval {
    Approve(u64),
    Reject(u64),
    Nobody,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreFault {
    /// Lets this many batches through, then fails one.
    Once(u32),
    /// Lets this many batches through, then fails every one after.
    ForGood(u32),
}

/// How a step ends: an exit code, or (negative) [`KILLED`], [`TIMED_OUT`],
/// [`NOT_STARTED`].
#[derive(Debug, Clone)]
struct Step {
    exit: i32,
    secs: u64,
}

const KILLED: i32 = -9;
const TIMED_OUT: i32 = -2;
const NOT_STARTED: i32 = -3;

fn outcome(step: &Step) -> Outcome {
    match step.exit {
        KILLED => Outcome::signal(9).taking(secs(step.secs)),
        TIMED_OUT => Outcome::timed_out(secs(step.secs)),
        NOT_STARTED => Outcome::not_started("/bin/sh: not found"),
        code => Outcome::exit(code).taking(secs(step.secs)),
    }
}

#[derive(Debug, Clone)]
struct Scenario {
    lint: Step,
    unit: Step,
    unit_failures: u32,
    /// `None`: the unit step writes no coverage report.
    coverage: Option<u32>,
    integration: Step,
    e2e: Step,
    /// test, staging, production.
    deploy: [(DeployFault, u64); 3],
    artifact: ArtifactFault,
    approval: Approval,
    staging_alarm: Vec<Datapoint>,
    production_alarm: Vec<Datapoint>,
    store: Option<StoreFault>,
    /// Sets the cancel flag this many fake seconds after the start.
    cancel_at: Option<u64>,
}

fn exit_code() -> impl Strategy<Value = i32> {
    prop_oneof![
        60 => Just(0),
        1 => Just(1),
        1 => Just(2),
        1 => Just(127),
        1 => Just(KILLED),
        1 => Just(TIMED_OUT),
        1 => Just(NOT_STARTED),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (exit_code(), 0u64..120).prop_map(|(exit, secs)| Step { exit, secs })
}

fn deploy_fault() -> impl Strategy<Value = DeployFault> {
    prop_oneof![
        20 => Just(DeployFault::None),
        3 => (1u32..=4).prop_map(DeployFault::Transient),
        1 => Just(DeployFault::Permanent),
        1 => Just(DeployFault::WrongVersion),
        1 => Just(DeployFault::CurrentVersionFails),
    ]
}

/// Deployments take zero to three seconds of fake time (zero-time deployments of two
/// runs in one millisecond exercise the unique deployment id).
fn deploy() -> impl Strategy<Value = (DeployFault, u64)> {
    (deploy_fault(), 0u64..4)
}

fn approval() -> impl Strategy<Value = Approval> {
    prop_oneof![
        6 => (0u64..=APPROVAL_TIMEOUT).prop_map(Approval::Approve),
        1 => (APPROVAL_TIMEOUT + 1..3 * APPROVAL_TIMEOUT).prop_map(Approval::Approve),
        2 => (0u64..=APPROVAL_TIMEOUT).prop_map(Approval::Reject),
        1 => Just(Approval::Nobody),
    ]
}

fn datapoints() -> impl Strategy<Value = Vec<Datapoint>> {
    let dp = prop_oneof![
        8 => Just(Datapoint::NotBreaching),
        2 => Just(Datapoint::Breaching),
        1 => Just(Datapoint::Missing),
    ];
    prop_oneof![
        1 => Just(Vec::new()),
        1 => prop::collection::vec(dp, 0..14),
    ]
}

fn coverage() -> impl Strategy<Value = Option<u32>> {
    prop_oneof![
        1 => Just(None),
        3 => (0u32..=100).prop_map(Some),
        16 => (MIN_COVERAGE..=100).prop_map(Some),
    ]
}

fn store_fault() -> impl Strategy<Value = Option<StoreFault>> {
    prop_oneof![
        6 => Just(None),
        1 => (1u32..80).prop_map(|n| Some(StoreFault::Once(n))),
        1 => (1u32..80).prop_map(|n| Some(StoreFault::ForGood(n))),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        (
            step(),
            step(),
            prop_oneof![20 => Just(0u32), 1 => 1u32..3],
            coverage(),
        ),
        (step(), step()),
        (
            [deploy(), deploy(), deploy()],
            prop_oneof![
                30 => Just(ArtifactFault::None),
                3 => Just(ArtifactFault::TamperAfterTest),
                1 => Just(ArtifactFault::PackageFails),
                1 => Just(ArtifactFault::DigestFails),
            ],
            approval(),
        ),
        (datapoints(), datapoints(), store_fault()),
        prop_oneof![7 => Just(None), 1 => (0u64..400).prop_map(Some)],
    )
        .prop_map(
            |(
                (lint, unit, unit_failures, coverage),
                (integration, e2e),
                (deploy, artifact, approval),
                (staging_alarm, production_alarm, store),
                cancel_at,
            )| Scenario {
                lint,
                unit,
                unit_failures,
                coverage,
                integration,
                e2e,
                deploy,
                artifact,
                approval,
                staging_alarm,
                production_alarm,
                store,
                cancel_at,
            },
        )
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Scripts the executor for one commit (so several runs can each have theirs).
fn script_steps(sim: &Sim, sha: &str, sc: &Scenario) {
    let x = &sim.executor;
    x.script_for_commit(sha, shop::LINT, outcome(&sc.lint));
    let mut unit = outcome(&sc.unit).junit(junit(10, sc.unit_failures));
    if let Some(c) = sc.coverage {
        unit = unit.coverage(lcov(f64::from(c)));
    }
    x.script_for_commit(sha, shop::UNIT, unit);
    let mut integration =
        outcome(&sc.integration).junit(junit(5, u32::from(sc.integration.exit != 0)));
    if sc.artifact == ArtifactFault::TamperAfterTest {
        let artifacts = sim.artifacts.clone();
        integration = integration.also(move || artifacts.tamper_all());
    }
    x.script_for_commit(sha, shop::INTEGRATION, integration);
    x.script_for_commit(sha, shop::E2E, outcome(&sc.e2e));
}

/// Scripts what is shared by every run of the world: deployers, approver, alarms, store.
fn script_world(sim: &Sim, sc: &Scenario) {
    for (env, (fault, took)) in shop::ENVIRONMENTS.iter().zip(sc.deploy) {
        let d = sim.deployer(env);
        d.taking(secs(took));
        match fault {
            DeployFault::None => {}
            DeployFault::Transient(n) => {
                d.fail_transiently(n);
            }
            DeployFault::Permanent => {
                d.fail_permanently(Some("permission denied (injected)"));
            }
            DeployFault::CurrentVersionFails => {
                d.fail_current_version(Some(PortError::transient("connection refused (injected)")));
            }
            DeployFault::WrongVersion => {
                d.misreport(Some("0000000000000000000000000000000000000bad"));
            }
        }
    }
    match sc.approval {
        Approval::Approve(after) => sim.approve_after("production", secs(after)),
        Approval::Reject(after) => sim.reject_after("production", secs(after), "not today"),
        Approval::Nobody => {}
    }
    sim.probe
        .script(shop::STAGING_ALARM, sc.staging_alarm.iter().copied());
    sim.probe
        .script(shop::PRODUCTION_ALARM, sc.production_alarm.iter().copied());
    match sc.artifact {
        ArtifactFault::PackageFails => sim
            .artifacts
            .fail_package(Some(PortError::permanent("disk full (injected)"))),
        ArtifactFault::DigestFails => sim.artifacts.fail_digest(Some(PortError::transient(
            "artifact store unreachable (injected)",
        ))),
        ArtifactFault::None | ArtifactFault::TamperAfterTest => {}
    }
    match sc.store {
        Some(StoreFault::Once(n)) => sim.store.fail_apply_after(n, 1),
        Some(StoreFault::ForGood(n)) => sim.store.fail_apply_after(n, u32::MAX),
        None => {}
    }
}

/// 2 of the last 3 datapoints breaching, at any of the window's samples. A missing
/// datapoint is sampled again within its period (the engine retries a probe that could
/// not measure once, 1 s later, while that fits before the next 2 s period), so it
/// takes the next scripted datapoint's place.
fn alarm_fires(dps: &[Datapoint]) -> bool {
    let mut queue = dps.iter().copied();
    let mut next = || queue.next().unwrap_or(Datapoint::NotBreaching);
    let seen: Vec<bool> = (0..WINDOW_SAMPLES)
        .map(|_| {
            let dp = match next() {
                Datapoint::Missing => next(),
                dp => dp,
            };
            dp == Datapoint::Breaching
        })
        .collect();
    (0..WINDOW_SAMPLES).any(|k| seen[k.saturating_sub(2)..=k].iter().filter(|b| **b).count() >= 2)
}

fn deploy_fails(fault: DeployFault) -> bool {
    match fault {
        DeployFault::None => false,
        DeployFault::Transient(n) => n >= 3,
        DeployFault::Permanent | DeployFault::WrongVersion | DeployFault::CurrentVersionFails => {
            true
        }
    }
}

/// The model: the stage a run of `sc` (alone in its world, store healthy) fails in, or
/// `None` when it succeeds.
fn expected_failure(sc: &Scenario) -> Option<&'static str> {
    let build_ok = sc.artifact != ArtifactFault::PackageFails
        && sc.lint.exit == 0
        && sc.unit.exit == 0
        && sc.unit_failures == 0
        && sc.coverage.is_some_and(|c| c >= MIN_COVERAGE);
    if !build_ok {
        return Some("build");
    }
    if sc.artifact == ArtifactFault::DigestFails
        || deploy_fails(sc.deploy[0].0)
        || sc.integration.exit != 0
    {
        return Some("test");
    }
    if sc.artifact == ArtifactFault::TamperAfterTest
        || deploy_fails(sc.deploy[1].0)
        || sc.e2e.exit != 0
        || alarm_fires(&sc.staging_alarm)
    {
        return Some("staging");
    }
    let approved = matches!(sc.approval, Approval::Approve(after) if after <= APPROVAL_TIMEOUT);
    if !approved || deploy_fails(sc.deploy[2].0) || alarm_fires(&sc.production_alarm) {
        return Some("production");
    }
    None
}

/// Sets the cancel flag at `at` seconds of fake time and remembers the instant it was
/// set (the first move of the clock at or after `at`).
fn cancel_at(sim: &Sim, at: u64) -> Arc<Mutex<Option<Timestamp>>> {
    let when = START.plus(secs(at));
    let seen = Arc::new(Mutex::new(None));
    let (flag, seen2) = (sim.cancel.clone(), seen.clone());
    sim.clock.on_advance(move |now| {
        let mut s = seen2.lock().unwrap();
        if now >= when && s.is_none() {
            *s = Some(now);
            flag.store(true, Ordering::SeqCst);
        }
    });
    seen
}

/// A run whose cancel flag was set at `flagged` while it was still going: it ends
/// `cancelled`, or `failed` by the step that was in flight when the flag was set, or
/// `succeeded` if the flag came with the very last move of the clock; no
/// step starts after the flag and no deployer is called for a deployment that had not
/// started by then.
fn check_cancelled_run(sim: &Sim, view: &RunView, flagged: Timestamp) -> Result<(), TestCaseError> {
    for stage in &view.stages {
        for step in &stage.steps {
            if let Some(at) = step.started_at {
                prop_assert!(
                    at <= flagged,
                    "step {}/{} started at {at:?}, after the cancel at {flagged:?}",
                    stage.name,
                    step.name
                );
            }
        }
    }
    for call in sim.timeline.of_run(view.id) {
        let first = sim
            .timeline
            .of_run(view.id)
            .into_iter()
            .find(|c| c.environment == call.environment)
            .unwrap();
        prop_assert!(
            first.start <= flagged,
            "deployer of {} first called after the cancel",
            call.environment
        );
    }
    match view.status {
        RunStatus::Cancelled => {
            prop_assert_eq!(view.reason.as_deref(), Some("cancelled by the user"))
        }
        RunStatus::Failed => {
            let failed = view
                .stages
                .iter()
                .flat_map(|s| s.steps.iter())
                .find(|t| t.status == ferry_core::StepStatus::Failed);
            prop_assert!(
                failed.is_some(),
                "failed without a failed step: {:?}",
                view.reason
            );
            let failed = failed.unwrap();
            prop_assert!(
                failed.started_at.is_some_and(|t| t <= flagged),
                "{:?}",
                view.reason
            );
            // A cancel is never reported as a failure.
            prop_assert_ne!(failed.reason.as_deref(), Some("cancelled by the user"));
        }
        // The flag came with the clock move that ended the run's last step.
        RunStatus::Succeeded => prop_assert_eq!(view.ended_at, Some(flagged)),
        other => prop_assert!(false, "run ended {other} after a cancel"),
    }
    Ok(())
}

fn check_finished_run(sim: &Sim, sc: &Scenario, view: &RunView) -> Result<(), TestCaseError> {
    let mut bad = invariants::after_run(sim, view);
    bad.extend(invariants::coverage_gate(
        sim,
        view.id,
        sc.coverage.map(f64::from),
        f64::from(MIN_COVERAGE),
    ));
    bad.extend(invariants::no_overlap(sim));
    prop_assert!(bad.is_empty(), "{}", bad.join("\n"));
    Ok(())
}

/// A run whose store failed under it: `drive` reported the error; the store holds the
/// run as of its last committed batch; no deployer was called after the failure, and
/// every call before it had its intent committed first (invariant 1).
fn check_crashed_run(sim: &Sim, err_kind: PortErrorKind) -> Result<(), TestCaseError> {
    prop_assert_eq!(err_kind, PortErrorKind::Unavailable);
    let failed = sim.store.applies().into_iter().find(|a| a.error.is_some());
    prop_assert!(failed.is_some(), "drive failed but no batch was refused");
    let failed = failed.unwrap();
    let run = failed.run;
    prop_assert_eq!(sim.store.load_run(run).ok(), sim.observer.last_view(run));
    for call in sim.timeline.entries() {
        prop_assert!(
            call.start_tick < failed.tick,
            "deployer of {} called at tick {} after the store failed at tick {}",
            call.environment,
            call.start_tick,
            failed.tick
        );
    }
    let bad = invariants::order(sim, run);
    prop_assert!(bad.is_empty(), "{}", bad.join("\n"));
    let bad = invariants::no_overlap(sim);
    prop_assert!(bad.is_empty(), "{}", bad.join("\n"));
    Ok(())
}

const SHA: &str = "1111111111111111111111111111111111111111";
const SHA2: &str = "2222222222222222222222222222222222222222";

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        max_shrink_iters: 400,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    /// One run per world, every fault at random: Properties 1, 3 and 6, events paired,
    /// invariants 1–3, and the outcome the model predicts.
    #[test]
    fn one_run_with_random_faults_keeps_every_property(sc in scenario()) {
        let sim = Sim::new(SHOP);
        script_steps(&sim, SHA, &sc);
        script_world(&sim, &sc);
        let flagged = sc.cancel_at.map(|at| cancel_at(&sim, at));
        match sim.try_run(SHA) {
            Err(e) => {
                prop_assert!(sc.store.is_some(), "engine error without a store fault: {e}");
                check_crashed_run(&sim, e.kind)?;
            }
            Ok(view) => {
                check_finished_run(&sim, &sc, &view)?;
                // A store fault past the run's last batch changes nothing.
                prop_assert!(sim.store.applies().iter().all(|a| a.error.is_none()));
                let flagged = flagged.and_then(|f| *f.lock().unwrap());
                if let Some(at) = flagged.filter(|at| view.ended_at.is_some_and(|end| *at <= end)) {
                    return check_cancelled_run(&sim, &view, at);
                }
                let expected = expected_failure(&sc);
                match expected {
                    None => prop_assert_eq!(view.status, RunStatus::Succeeded, "{:?}", view.reason),
                    Some(stage) => {
                        prop_assert_eq!(view.status, RunStatus::Failed);
                        prop_assert_eq!(Sim::stage_status(&view, stage), Some(StageStatus::Failed), "{:?}", view.reason);
                    }
                }
                // What runs in each environment is what the last successful stage left.
                for env in shop::ENVIRONMENTS {
                    let deployed_ok = Sim::stage_status(&view, env) == Some(StageStatus::Succeeded);
                    if deployed_ok {
                        let running = sim.deployer(env).running();
                        prop_assert_eq!(running.as_deref(), Some(SHA));
                    }
                }
            }
        }
    }
}

fn concurrent_scenario() -> impl Strategy<Value = (Scenario, Scenario)> {
    (scenario(), scenario(), prop::bool::weighted(0.2)).prop_map(|(mut a, mut b, build_faults)| {
        for sc in [&mut a, &mut b] {
            // Most runs get past the build, so that they meet in the environments.
            if !build_faults {
                sc.lint.exit = 0;
                sc.unit.exit = 0;
                sc.unit_failures = 0;
                sc.coverage = Some(sc.coverage.unwrap_or(100).max(MIN_COVERAGE));
            }
            // No artifact faults (they would hit both runs at a random moment) and no
            // store faults here; approvals come within 10 minutes (a timed-out approval
            // holds no lease and only makes the case slow on a paced clock).
            sc.artifact = ArtifactFault::None;
            sc.store = None;
            sc.approval = match sc.approval {
                Approval::Approve(after) => Approval::Approve(after % 600),
                Approval::Reject(after) => Approval::Reject(after % 600),
                Approval::Nobody => Approval::Approve(0),
            };
        }
        (a, b)
    })
}

/// Drives a run of `a` and one of `b` at once, on two threads, in one world.
fn two_runs_at_once(a: &Scenario, b: &Scenario, lease_ttl: Duration) -> Result<(), TestCaseError> {
    let mut sim = Sim::new(SHOP);
    sim.settings.lease_ttl = lease_ttl;
    // One fake second is 200 µs of real time, so the two runs really overlap.
    sim.clock.pace(Some(5000));
    script_steps(&sim, SHA, a);
    script_steps(&sim, SHA2, b);
    script_world(&sim, a);
    let start = Barrier::new(2);
    let run = |sha| {
        start.wait();
        sim.try_run(sha)
    };
    let run = &run;
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(move || run(SHA));
        let tb = s.spawn(move || run(SHA2));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    let bad = invariants::no_overlap(&sim);
    prop_assert!(bad.is_empty(), "{}", bad.join("\n"));
    for (r, sc) in [(ra, a), (rb, b)] {
        let view = r.map_err(|e| TestCaseError::fail(format!("engine error: {e}")))?;
        check_finished_run(&sim, sc, &view)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        max_shrink_iters: 100,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    /// DESIGN invariant 2: two runs driven at once on two threads, sharing the store,
    /// the clock and the deployers, never deploy into one environment at the same time,
    /// and each still keeps Properties 1, 3 and 6.
    ///
    /// The lease time-to-live is a day of fake time: the lease heartbeat runs at the
    /// real clock's pace, so on the fake clock a long stage would outlive a 30 s lease
    /// with no chance to renew it — the situation of a store that stays unreachable for
    /// longer than the lease, which `a_run_that_lost_its_environment_lease_stops` in
    /// `tests/engine.rs` covers.
    #[test]
    fn two_concurrent_runs_never_share_an_environment((a, b) in concurrent_scenario()) {
        two_runs_at_once(&a, &b, Duration::from_secs(24 * 3600))?;
    }
}

#[test]
fn the_model_reads_alarms_like_cloudwatch() {
    use Datapoint::{Breaching as B, Missing as M, NotBreaching as N};
    assert!(!alarm_fires(&[]));
    assert!(!alarm_fires(&[B, N, N, B, N, N, B]));
    assert!(alarm_fires(&[N, B, N, B]));
    assert!(alarm_fires(&[B, M, B]));
    // A missing datapoint is retried: the next one takes its place.
    assert!(alarm_fires(&[B, N, M, B]));
    assert!(!alarm_fires(&[B, N, M, M, N, B]));
    // The 12th datapoint falls after the window.
    assert!(!alarm_fires(&[N, N, N, N, N, N, N, N, N, N, B, B]));
}
