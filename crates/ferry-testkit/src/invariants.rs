//! Checks of the seed's correctness properties (§12) and DESIGN.md's invariants over a
//! simulated world after runs were driven. Each returns the violations it found, as
//! sentences; an empty list means the property holds.

use crate::deployer::{CallKind, DeployEntry, DeployResult};
use crate::sim::Sim;
use crate::store::StoredEvent;
use ferry_core::rollback::{RollbackRecord, RollbackStatus, Trigger};
use ferry_core::run::RunView;
use ferry_core::{Change, DeploymentStatus, EventKind, RollbackLevel, RunId, StageStatus};
use ferry_engine::ports::Ledger as _;
use ferry_engine::ports::Store;
use std::collections::BTreeMap;

fn find<'a>(
    events: &'a [StoredEvent],
    run: RunId,
    kind: EventKind,
    environment: Option<&str>,
) -> impl Iterator<Item = &'a StoredEvent> {
    events.iter().filter(move |e| {
        e.event.run == Some(run)
            && e.event.kind == kind
            && e.event.environment.as_deref() == environment
    })
}

/// Seed Property 1 (order) and DESIGN invariants 1 and 3, over every deployer call of
/// `run`: the build stage succeeded, the intent (`deployment_started`) was committed
/// before the call, the run's deployment to the previous environment had ended
/// `succeeded` (event and record), an environment with an approval had an
/// `approval_granted` first, and the bytes deployed are the run's artifact.
pub fn order(sim: &Sim, run: RunId) -> Vec<String> {
    let mut bad = Vec::new();
    let envs: Vec<&ferry_config::Environment> = sim.pipeline.environments.iter().collect();
    let events = sim.store.all_events();
    let records = sim.deployments_of(run);
    let artifact = sim.store.load_run(run).ok().and_then(|v| v.artifact);
    for call in sim.timeline.deploys_of_run(run) {
        let Some(k) = envs.iter().position(|e| e.name == call.environment) else {
            bad.push(format!(
                "run {run} deployed to `{}`, which is not an environment",
                call.environment
            ));
            continue;
        };
        let env = call.environment.as_str();
        let before = |e: &&StoredEvent| e.tick < call.start_tick;
        let build_ok = find(&events, run, EventKind::StageSucceeded, None)
            .filter(before)
            .any(|e| e.event.data.get("stage").and_then(|s| s.as_str()) == Some("build"));
        if !build_ok {
            bad.push(format!(
                "run {run} deployed to {env} before its build stage succeeded"
            ));
        }
        if find(&events, run, EventKind::DeploymentStarted, Some(env))
            .filter(before)
            .count()
            == 0
        {
            bad.push(format!(
                "run {run} called the {env} deployer (tick {}) before committing deployment_started (invariant 1)",
                call.start_tick
            ));
        }
        if k > 0 {
            let prev = envs[k - 1].name.as_str();
            if find(&events, run, EventKind::DeploymentSucceeded, Some(prev))
                .filter(before)
                .count()
                == 0
            {
                bad.push(format!(
                    "run {run} deployed to {env} (tick {}) before its deployment to {prev} ended succeeded (Property 1)",
                    call.start_tick
                ));
            }
            // (Succeeded then, possibly taken back since by a full level rollback.)
            if !records.iter().any(|d| {
                d.environment == prev
                    && (d.status == DeploymentStatus::Succeeded
                        || d.rollback_level == Some(RollbackLevel::Full))
            }) {
                bad.push(format!(
                    "run {run} deployed to {env} but its deployment record for {prev} is not succeeded (Property 1)"
                ));
            }
        }
        if envs[k].approval.is_some()
            && find(&events, run, EventKind::ApprovalGranted, Some(env))
                .filter(before)
                .count()
                == 0
        {
            bad.push(format!(
                "run {run} deployed to {env} without an approval_granted event first (Property 1)"
            ));
        }
        if let Some(a) = &artifact
            && (call.request.artifact_digest != a.digest
                || call.request.artifact_location != a.location)
        {
            bad.push(format!(
                "run {run} deployed {} to {env}, not its artifact {}",
                call.request.artifact_digest, a.digest
            ));
        }
    }
    bad
}

/// Seed Property 3: when the coverage the build measured (`coverage`, `None` when no
/// report was written) is below `min`, nothing of the run was deployed, nor recorded as
/// deployed.
pub fn coverage_gate(sim: &Sim, run: RunId, coverage: Option<f64>, min: f64) -> Vec<String> {
    let below = coverage.is_none_or(|c| c < min);
    if !below {
        return Vec::new();
    }
    let mut bad = Vec::new();
    let calls = sim.timeline.of_run(run);
    if !calls.is_empty() {
        bad.push(format!(
            "run {run} has coverage {coverage:?} below {min} but called deployers {} time(s) (Property 3)",
            calls.len()
        ));
    }
    let recs = sim.deployments_of(run);
    if !recs.is_empty() {
        bad.push(format!(
            "run {run} has coverage {coverage:?} below {min} but recorded {} deployment(s) (Property 3)",
            recs.len()
        ));
    }
    bad
}

/// Seed Property 6 once `drive` returned `view`: the store gives back exactly `view`,
/// every deployment record of the run is terminal, at most one per environment, and a
/// record is `succeeded` exactly when its stage succeeded. Also [`timestamps`].
pub fn consistency(sim: &Sim, view: &RunView) -> Vec<String> {
    let mut bad = Vec::new();
    let run = view.id;
    match sim.store.load_run(run) {
        Ok(stored) if &stored == view => {}
        Ok(stored) => bad.push(format!(
            "run {run}: the stored view differs from the engine's (Property 6)\n stored: {stored:?}\n engine: {view:?}"
        )),
        Err(e) => bad.push(format!("run {run}: load_run failed: {e}")),
    }
    if !view.status.is_terminal() {
        bad.push(format!(
            "run {run}: drive returned a run that is still {}",
            view.status
        ));
    }
    bad.extend(timestamps(view));
    let mut per_env: BTreeMap<String, usize> = BTreeMap::new();
    for d in sim.deployments_of(run) {
        *per_env.entry(d.environment.clone()).or_default() += 1;
        if d.status == DeploymentStatus::InProgress {
            bad.push(format!(
                "run {run}: deployment {} is still in_progress after drive returned (Property 6)",
                d.deployment_id
            ));
        }
        let stage = Sim::stage_status(view, &d.environment);
        let stage_ok = stage == Some(StageStatus::Succeeded);
        if d.status == DeploymentStatus::RolledBack {
            // Taken back since: by its own failed stage (stage or full level), or, after
            // it succeeded, by a full level rollback of a later failure.
            // A deployment whose stage succeeded is taken back only by a full level
            // rollback of another failure, or by a rollback of its own that no failure
            // of its stage triggered (manual, or an alarm in its watch period).
            let own_trigger = sim
                .store
                .rollback(&d.deployment_id)
                .ok()
                .flatten()
                .map(|r| r.trigger);
            let untriggered = matches!(
                own_trigger,
                Some(Trigger::Manual { .. } | Trigger::Alarm { .. })
            );
            if d.rollback_reason.is_none()
                || d.rollback_time.is_none()
                || d.rollback_level.is_none()
                || (stage_ok && d.rollback_level != Some(RollbackLevel::Full) && !untriggered)
            {
                bad.push(format!(
                    "run {run}: deployment {} is rolled_back (level {:?}, reason {:?}, time {:?}) but stage {} is {:?}",
                    d.deployment_id, d.rollback_level, d.rollback_reason, d.rollback_time, d.environment, stage
                ));
            }
        } else if (d.status == DeploymentStatus::Succeeded) != stage_ok {
            bad.push(format!(
                "run {run}: deployment {} is {} but stage {} is {:?} (Property 6)",
                d.deployment_id, d.status, d.environment, stage
            ));
        }
        if d.end_time.is_none() && d.status != DeploymentStatus::InProgress {
            bad.push(format!(
                "run {run}: deployment {} ended without an end time",
                d.deployment_id
            ));
        }
        if let Some(end) = d.end_time
            && end < d.start_time
        {
            bad.push(format!(
                "run {run}: deployment {} ends ({end}) before it starts ({})",
                d.deployment_id, d.start_time
            ));
        }
    }
    for (env, n) in per_env {
        if n > 1 {
            bad.push(format!("run {run}: {n} deployment records for {env}"));
        }
    }
    bad
}

/// Time runs forward in a run's view: created ≤ started ≤ ended for the run, and started
/// ≤ ended for each stage and step.
pub fn timestamps(view: &RunView) -> Vec<String> {
    let mut bad = Vec::new();
    let run = view.id;
    let mut check =
        |what: String, a: Option<ferry_core::Timestamp>, b: Option<ferry_core::Timestamp>| {
            if let (Some(a), Some(b)) = (a, b)
                && b < a
            {
                bad.push(format!(
                    "run {run}: {what} ends at {} before it starts at {}",
                    b.millis(),
                    a.millis()
                ));
            }
        };
    check(
        "the run".to_string(),
        Some(view.created_at),
        view.started_at,
    );
    check("the run".to_string(), view.started_at, view.ended_at);
    for s in &view.stages {
        check(format!("stage {}", s.name), s.started_at, s.ended_at);
        for t in &s.steps {
            check(
                format!("step {}/{}", s.name, t.name),
                t.started_at,
                t.ended_at,
            );
        }
    }
    bad
}

/// Events: every `deployment_started` of the run has exactly one matching
/// `deployment_succeeded` or `deployment_failed` after it (same run and environment),
/// agreeing with the record's status (or the record was rolled back since).
pub fn events_paired(sim: &Sim, run: RunId) -> Vec<String> {
    let mut bad = Vec::new();
    let events = sim.store.all_events();
    let records = sim.deployments_of(run);
    let starts = events
        .iter()
        .filter(|e| e.event.run == Some(run) && e.event.kind == EventKind::DeploymentStarted);
    for started in starts {
        let env = started.event.environment.as_deref();
        let ends: Vec<&StoredEvent> = events
            .iter()
            .filter(|e| {
                e.event.run == Some(run)
                    && e.event.environment.as_deref() == env
                    && matches!(
                        e.event.kind,
                        EventKind::DeploymentSucceeded | EventKind::DeploymentFailed
                    )
            })
            .collect();
        let env = env.unwrap_or_default();
        match ends.as_slice() {
            [end] => {
                if end.id < started.id {
                    bad.push(format!("run {run}: {env}'s {} comes before its deployment_started", end.event.kind));
                }
                let want = match end.event.kind {
                    EventKind::DeploymentSucceeded => DeploymentStatus::Succeeded,
                    _ => DeploymentStatus::Failed,
                };
                if !records.iter().any(|d| {
                    d.environment == env
                        && (d.status == want || d.status == DeploymentStatus::RolledBack)
                }) {
                    bad.push(format!(
                        "run {run}: {env} ended with {} but no record of it is {want}",
                        end.event.kind
                    ));
                }
            }
            ends => bad.push(format!(
                "run {run}: deployment_started for {env} has {} deployment_succeeded/deployment_failed events",
                ends.len()
            )),
        }
    }
    bad
}

/// DESIGN invariant 2 over the whole world: no two deployer calls (deploys or
/// rollbacks) into one environment were in flight at once, no two runs' deployments of
/// one environment (from the commit of `deployment_started` to that of its end, in
/// ticks) overlap, and no rollback call falls inside a deployment of its environment.
pub fn no_overlap(sim: &Sim) -> Vec<String> {
    let mut bad: Vec<String> = sim
        .timeline
        .overlaps()
        .into_iter()
        .map(|o| {
            format!(
                "deployer calls into {} overlapped: runs {:?} (invariant 2)",
                o.environment, o.runs
            )
        })
        .collect();
    let all = sim.store.all_deployments();
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            if a.record.environment != b.record.environment || a.record.run_id == b.record.run_id {
                continue;
            }
            let a_end = a.finished_tick.unwrap_or(u64::MAX);
            let b_end = b.finished_tick.unwrap_or(u64::MAX);
            if a.started_tick < b_end && b.started_tick < a_end {
                bad.push(format!(
                    "deployments {} (run {}, ticks {}..{a_end}) and {} (run {}, ticks {}..{b_end}) overlap in {} (invariant 2)",
                    a.record.deployment_id,
                    a.record.run_id,
                    a.started_tick,
                    b.record.deployment_id,
                    b.record.run_id,
                    b.started_tick,
                    a.record.environment
                ));
            }
        }
    }
    for call in sim.timeline.rollbacks() {
        for d in all
            .iter()
            .filter(|d| d.record.environment == call.environment)
        {
            let end = d.finished_tick.unwrap_or(u64::MAX);
            if d.started_tick < call.end_tick && call.start_tick < end {
                bad.push(format!(
                    "a rollback of {} to {} (ticks {}..{}) ran while deployment {} (run {}, ticks {}..{end}) was open (invariant 2)",
                    call.environment,
                    short(&call.version),
                    call.start_tick,
                    call.end_tick,
                    d.record.deployment_id,
                    d.record.run_id,
                    d.started_tick
                ));
            }
        }
    }
    bad
}

/// Every per-run check that needs no scenario knowledge: [`order`], [`consistency`],
/// [`events_paired`] and [`deployed_through_an_open_gate`].
pub fn after_run(sim: &Sim, view: &RunView) -> Vec<String> {
    let mut bad = order(sim, view.id);
    bad.extend(consistency(sim, view));
    bad.extend(events_paired(sim, view.id));
    bad.extend(deployed_through_an_open_gate(sim, view.id));
    bad
}

/// Deployment windows (seed §13.1): every deploy call of the run (over what really ran,
/// the timeline) started while its environment's gate was open — inside its windows, no
/// freeze holding it — or after a second person had confirmed a break-glass override.
/// Rollbacks are not deploy calls of a run and are never held.
pub fn deployed_through_an_open_gate(sim: &Sim, run: RunId) -> Vec<String> {
    let mut bad = Vec::new();
    let overrides = sim.store.overrides(run).unwrap_or_default();
    for call in sim.timeline.deploys_of_run(run) {
        let env = &call.environment;
        let windows = sim
            .pipeline
            .environment(env)
            .and_then(|e| e.windows.as_ref());
        let freezes = sim.store.freezes(Some(env), call.start).unwrap_or_default();
        // Only what was confirmed by then counts.
        let confirmed: Vec<_> = overrides
            .iter()
            .filter(|o| &o.environment == env && o.confirmed_at.is_some_and(|c| c <= call.start))
            .cloned()
            .collect();
        if let ferry_core::window::Gate::Closed { reason, .. } =
            ferry_core::window::gate(windows, &freezes, &confirmed, call.start)
        {
            bad.push(format!(
                "run {run} deployed to {env} at {} through a closed gate: {reason}",
                ferry_core::events::iso8601(call.start)
            ));
        }
    }
    bad
}

fn short(sha: &str) -> &str {
    ferry_core::short_sha(sha)
}

/// The rollback calls (on the timeline) that performed `r`: the calls that carry the
/// rolled back deployment's run (`FERRY_ROLLBACK_FROM_RUN`, or `FERRY_RUN_ID` when the
/// engine does not say) and version (`FERRY_PREVIOUS_VERSION`) and fall within the
/// rollback's time.
fn calls_of<'a>(
    calls: &'a [DeployEntry],
    r: &'a RollbackRecord,
    run: RunId,
) -> impl Iterator<Item = &'a DeployEntry> {
    let run = run.to_string();
    calls.iter().filter(move |c| {
        let vars = &c.request.env;
        let from = vars
            .get("FERRY_ROLLBACK_FROM_RUN")
            .or_else(|| vars.get("FERRY_RUN_ID"));
        c.kind == CallKind::Rollback
            && from == Some(&run)
            && vars.get("FERRY_PREVIOUS_VERSION") == Some(&r.from_version)
            && c.start >= r.started_at
            && r.ended_at.is_none_or(|end| c.end <= end)
    })
}

/// The environments of the pipeline, in promotion order.
fn environments(sim: &Sim) -> Vec<String> {
    sim.pipeline
        .environments
        .iter()
        .map(|e| e.name.clone())
        .collect()
}

/// Promotion (seed Property 1, over what really ran): every version put into an
/// environment — deployed or rolled back to — had succeeded in the environment before
/// it (a `deployment_succeeded` committed earlier), and so production never runs, per
/// its deployer, a version that did not succeed in staging.
pub fn promoted_only_after_previous(sim: &Sim) -> Vec<String> {
    let mut bad = Vec::new();
    let envs = environments(sim);
    let events = sim.store.all_events();
    let succeeded_in = |env: &str, version: &str, before: u64| {
        events.iter().any(|e| {
            e.tick < before
                && e.event.kind == EventKind::DeploymentSucceeded
                && e.event.environment.as_deref() == Some(env)
                && e.event.data.get("version").and_then(|v| v.as_str()) == Some(version)
        })
    };
    for (k, env) in envs.iter().enumerate().skip(1) {
        let prev = &envs[k - 1];
        for c in sim.timeline.into_env(env) {
            if c.result == DeployResult::Succeeded && !succeeded_in(prev, &c.version, c.start_tick)
            {
                bad.push(format!(
                    "{} put {} into {env} (tick {}) but it had not succeeded in {prev}",
                    match c.kind {
                        CallKind::Deploy => "a deployment",
                        CallKind::Rollback => "a rollback",
                    },
                    short(&c.version),
                    c.start_tick
                ));
            }
        }
        // What really runs (`current_version` unless the fake is told to lie).
        if let Some(running) = sim.deployer(env).running()
            && !succeeded_in(prev, &running, u64::MAX)
        {
            bad.push(format!(
                "{env} runs {}, which never succeeded in {prev}",
                short(&running)
            ));
        }
    }
    bad
}

/// Rollbacks are recorded once (seed Property 2): one record per deployment, none left
/// `in_progress`; one `rollback_initiated` per level attempted, each level ending in one
/// `rollback_succeeded` or `rollback_failed`; a succeeded rollback redeployed each of
/// its environments exactly once (to its target) and marked the deployment
/// `rolled_back` at its level; a failed one opened an incident that holds the
/// environment; nothing to roll back to leaves the deployment as it was. With
/// `automatic`, every deployment that ended `deployment_failed` has a record; without,
/// only manual rollbacks exist. Every `rolled_back` deployment was taken back by a
/// succeeded rollback of its level.
pub fn rollbacks_recorded_once(sim: &Sim, automatic: bool, known: KnownBugs) -> Vec<String> {
    let mut bad = Vec::new();
    let records = sim.store.rollbacks(usize::MAX).unwrap_or_default();
    let deployments: Vec<ferry_core::DeploymentRecord> = sim
        .store
        .all_deployments()
        .into_iter()
        .map(|d| d.record)
        .collect();
    let events = sim.store.all_events();
    let calls = sim.timeline.rollbacks();
    let envs = environments(sim);
    let mut seen = std::collections::BTreeSet::new();
    for r in &records {
        let id = &r.deployment_id;
        if !seen.insert(id.clone()) {
            bad.push(format!("deployment {id} has more than one rollback record"));
        }
        if r.status == RollbackStatus::InProgress {
            bad.push(format!(
                "the rollback of {id} is still in progress after every caller returned"
            ));
            continue;
        }
        if !automatic && !matches!(r.trigger, Trigger::Manual { .. }) {
            bad.push(format!(
                "deployment {id} was rolled back automatically ({:?}) with `rollback.automatic: false`",
                r.trigger
            ));
        }
        let Some(d) = deployments.iter().find(|d| &d.deployment_id == id) else {
            bad.push(format!("the rollback record {id} names no deployment"));
            continue;
        };
        if d.environment != r.environment || d.version != r.from_version {
            bad.push(format!(
                "the rollback record {id} says {} {} but the deployment is {} {}",
                r.environment,
                short(&r.from_version),
                d.environment,
                short(&d.version)
            ));
        }

        let level_of = |e: &StoredEvent| {
            e.event
                .data
                .get("level")
                .and_then(|l| l.as_str())
                .and_then(RollbackLevel::parse)
        };
        use RollbackLevel::{Full, Stage};
        let count = |kind: EventKind, level: Option<RollbackLevel>| {
            events
                .iter()
                .filter(|e| {
                    e.event.run == Some(d.run_id)
                        && e.event.environment.as_deref() == Some(d.environment.as_str())
                        && e.event.kind == kind
                        && (level.is_none() || level_of(e) == level)
                        // A person may retry a failed rollback: only this attempt counts.
                        && e.event.at >= r.started_at
                })
                .count()
        };
        let counts = (
            count(EventKind::RollbackInitiated, Some(Stage)),
            count(EventKind::RollbackFailed, Some(Stage)),
            count(EventKind::RollbackInitiated, Some(Full)),
            count(EventKind::RollbackFailed, Some(Full)),
            count(EventKind::RollbackSucceeded, None),
            count(EventKind::IncidentOpened, None),
        );
        let (i_stage, f_stage, i_full, f_full, succeeded, incidents) = counts;
        let mine: Vec<&DeployEntry> = calls_of(&calls, r, d.run_id).collect();
        // The calls of full level come after stage level's `rollback_failed`.
        let full_from = events
            .iter()
            .find(|e| {
                e.event.run == Some(d.run_id)
                    && e.event.environment.as_deref() == Some(d.environment.as_str())
                    && e.event.kind == EventKind::RollbackFailed
                    && level_of(e) == Some(Stage)
                    && e.event.at >= r.started_at
            })
            .map_or(u64::MAX, |e| e.tick);
        let ok = |full: bool, env: &str| {
            mine.iter()
                .filter(|c| {
                    c.environment == env
                        && c.result == DeployResult::Succeeded
                        && c.start >= r.started_at
                        && (c.start_tick > full_from) == full
                })
                .collect::<Vec<_>>()
        };
        // Each level redeploys an environment at most once (stage level only its own).
        for env in &envs {
            let (stage, full) = (ok(false, env).len(), ok(true, env).len());
            if full > 1 || stage > usize::from(*env == d.environment) {
                bad.push(format!(
                    "the rollback of {id} redeployed {env} {stage} time(s) at stage level and {full} at full level"
                ));
            }
        }
        let ok_into = |env: &str| {
            let full = r.level == Some(Full);
            ok(full, env)
        };
        let expect = |bad: &mut Vec<String>, want: (usize, usize, usize, usize, usize, usize)| {
            if counts != want {
                bad.push(format!(
                    "the rollback of {id} ({}, level {:?}) has events (stage initiated, stage failed, full initiated, full failed, succeeded, incident) = {counts:?}, not {want:?}",
                    r.status, r.level
                ));
            }
        };
        if r.status == RollbackStatus::Succeeded
            && r.to_version.as_ref() == Some(&r.from_version)
            && !(known.full_level_may_restore_the_bad_version && r.level == Some(Full))
        {
            bad.push(format!(
                "the {:?} level rollback of {id} \"succeeded\" by restoring {}, the version it rolls back",
                r.level,
                short(&r.from_version)
            ));
        }
        match (r.status, r.level) {
            (RollbackStatus::NothingToDo, _) => {
                expect(&mut bad, (0, 0, 0, 0, 0, 0));
                if !mine.is_empty() {
                    bad.push(format!(
                        "the rollback of {id} had nothing to do but called a deployer"
                    ));
                }
                if d.status == DeploymentStatus::RolledBack
                    && d.rollback_level != Some(RollbackLevel::Full)
                {
                    bad.push(format!(
                        "deployment {id} is rolled_back although its rollback had nothing to do"
                    ));
                }
            }
            (RollbackStatus::Succeeded, Some(Stage)) => {
                expect(&mut bad, (1, 0, 0, 0, 1, 0));
                let into = ok_into(&r.environment);
                if into.len() != 1
                    || into
                        .iter()
                        .any(|c| Some(&c.version) != r.to_version.as_ref())
                {
                    bad.push(format!(
                        "the stage level rollback of {id} to {:?} made {} successful call(s) into {}",
                        r.to_version,
                        into.len(),
                        r.environment
                    ));
                }
                if mine.iter().any(|c| c.environment != r.environment) {
                    bad.push(format!(
                        "the stage level rollback of {id} touched another environment"
                    ));
                }
                let remarked = known.full_level_reads_stale_history
                    && d.status == DeploymentStatus::RolledBack
                    && d.rollback_level == Some(Full);
                if !remarked
                    && (d.status != DeploymentStatus::RolledBack || d.rollback_level != Some(Stage))
                {
                    bad.push(format!(
                        "deployment {id} is {} (level {:?}) after its stage level rollback succeeded",
                        d.status, d.rollback_level
                    ));
                }
            }
            (RollbackStatus::Succeeded, Some(Full)) => {
                expect(&mut bad, (1, 1, 1, 0, 1, 0));
                // Environments an incident held were left alone, as the record says.
                let left_alone: Vec<&String> = envs
                    .iter()
                    .filter(|e| {
                        r.detail
                            .iter()
                            .any(|l| l.starts_with(&format!("{e}: left alone")))
                    })
                    .collect();
                let envs: Vec<String> = envs
                    .iter()
                    .filter(|e| !left_alone.contains(e))
                    .cloned()
                    .collect();
                for env in &envs {
                    let into = ok_into(env);
                    if into.len() != 1
                        || into
                            .iter()
                            .any(|c| Some(&c.version) != r.to_version.as_ref())
                    {
                        bad.push(format!(
                            "the full level rollback of {id} to {:?} made {} successful call(s) into {env}",
                            r.to_version,
                            into.len()
                        ));
                    }
                }
                // Production first.
                let order: Vec<&str> = mine
                    .iter()
                    .filter(|c| c.result == DeployResult::Succeeded && c.start_tick > full_from)
                    .map(|c| c.environment.as_str())
                    .collect();
                let want: Vec<&str> = envs.iter().rev().map(String::as_str).collect();
                if order != want {
                    bad.push(format!(
                        "the full level rollback of {id} went {order:?}, not production first"
                    ));
                }
                if d.status != DeploymentStatus::RolledBack || d.rollback_level != Some(Full) {
                    bad.push(format!(
                        "deployment {id} is {} (level {:?}) after its full level rollback succeeded",
                        d.status, d.rollback_level
                    ));
                }
            }
            (RollbackStatus::Failed, _) if r.incident.is_none() => {
                // Refused before anything happened: a manual target that never succeeded.
                expect(&mut bad, (0, 0, 0, 0, 0, 0));
                if !matches!(r.trigger, Trigger::Manual { .. }) || !mine.is_empty() {
                    bad.push(format!(
                        "the rollback of {id} failed without an incident, yet was not a refused manual one"
                    ));
                }
            }
            (RollbackStatus::Failed, _) => {
                let manual = matches!(r.trigger, Trigger::Manual { .. });
                let full_ok = (i_full, f_full) == (0, 1)
                    || (i_full, f_full) == (1, 1)
                    || (manual && (i_full, f_full) == (0, 0));
                if (i_stage, f_stage, succeeded, incidents) != (1, 1, 0, 1) || !full_ok {
                    bad.push(format!(
                        "the failed rollback of {id} has events (stage initiated, stage failed, full initiated, full failed, succeeded, incident) = {counts:?}"
                    ));
                }
                let incident = sim
                    .store
                    .hold(&r.environment)
                    .ok()
                    .flatten()
                    .filter(|i| Some(i.id) == r.incident);
                let resolved = events.iter().any(|e| {
                    e.event.kind == EventKind::IncidentResolved
                        && e.event.data.get("incidentId").and_then(|v| v.as_i64()) == r.incident
                });
                if incident.is_none() && !resolved {
                    bad.push(format!(
                        "the rollback of {id} failed with incident {:?}, but it does not hold {}",
                        r.incident, r.environment
                    ));
                }
            }
            (RollbackStatus::NotPerformed, _) => {
                // Refused because it would take back a rollback-unsafe deployment: an
                // incident, a freeze, nothing redeployed at the refused level.
                let refused_at_full = (i_stage, f_stage) == (1, 1);
                if incidents != 1 || succeeded != 0 || i_full != 0 || f_full != 0 {
                    bad.push(format!(
                        "the rollback of {id} not performed has events (stage initiated, stage failed, full initiated, full failed, succeeded, incident) = {counts:?}"
                    ));
                }
                if !refused_at_full && !mine.is_empty() {
                    bad.push(format!(
                        "the rollback of {id} was not performed but called a deployer"
                    ));
                }
                let frozen = r.ended_at.is_some_and(|at| {
                    sim.store
                        .freezes(Some(&r.environment), at)
                        .is_ok_and(|f| !f.is_empty())
                });
                let lifted = events.iter().any(|e| {
                    e.event.kind == EventKind::FreezeLifted
                        && e.event.environment.as_deref() == Some(r.environment.as_str())
                });
                if !frozen && !lifted {
                    bad.push(format!(
                        "the rollback of {id} was not performed, but {} was not frozen",
                        r.environment
                    ));
                }
                if matches!(
                    r.trigger,
                    Trigger::Manual {
                        accept_data_loss: true,
                        ..
                    }
                ) {
                    bad.push(format!(
                        "the rollback of {id} was not performed although a person accepted the data loss"
                    ));
                }
            }
            (status, level) => bad.push(format!(
                "the rollback of {id} ended {status} at level {level:?}"
            )),
        }
    }
    for d in &deployments {
        let own = records.iter().find(|r| r.deployment_id == d.deployment_id);
        if d.status == DeploymentStatus::RolledBack {
            let by_own = own.is_some_and(|r| {
                r.status == RollbackStatus::Succeeded && r.level == d.rollback_level
            });
            let by_full = d.rollback_level == Some(RollbackLevel::Full)
                && records.iter().any(|r| {
                    r.status == RollbackStatus::Succeeded && r.level == Some(RollbackLevel::Full)
                });
            // A stage level rollback takes back every deployment of its environment
            // newer than the one it restores, not only the failing one.
            let by_stage_in_env = d.rollback_level == Some(RollbackLevel::Stage)
                && records.iter().any(|r| {
                    r.status == RollbackStatus::Succeeded
                        && r.level == Some(RollbackLevel::Stage)
                        && r.environment == d.environment
                });
            if !by_own && !by_full && !by_stage_in_env {
                bad.push(format!(
                    "deployment {} is rolled_back (level {:?}) but no succeeded rollback of that level took it back",
                    d.deployment_id, d.rollback_level
                ));
            }
        }
        let failed = events.iter().any(|e| {
            e.event.kind == EventKind::DeploymentFailed
                && e.event.run == Some(d.run_id)
                && e.event.environment.as_deref() == Some(d.environment.as_str())
        });
        if automatic && failed && own.is_none() {
            bad.push(format!(
                "deployment {} failed but was never rolled back (no rollback record; seed Property 4)",
                d.deployment_id
            ));
        }
    }
    bad
}

/// Known bugs of the engine that checks can look past, so that a simulation keeps
/// finding other problems meanwhile. Each has an ignored test that reproduces it; the
/// default tolerates none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KnownBugs {
    /// A rollback to a version older than the environment's newest good one (full
    /// level, or manual `--to`) marks only the environment's newest deployment
    /// `rolled_back`: a succeeded deployment between the target and that one stays
    /// `succeeded`, so the environment's last known good names a version it does not
    /// run (`a_full_rollback_leaves_no_newer_last_known_good_behind`,
    /// `a_manual_rollback_past_a_good_version_leaves_no_newer_last_known_good_behind`).
    pub skipped_good_deployments_stay_good: bool,
    /// Full level targets the newest version that succeeded everywhere even when that
    /// is the version being rolled back (a rollback of a succeeded deployment, manual or
    /// by an alarm, or of a re-run of a released commit): it "succeeds" leaving the bad
    /// version in place and marked `rolled_back`
    /// (`full_level_never_restores_the_version_it_rolls_back`).
    pub full_level_may_restore_the_bad_version: bool,
    /// Full level reads the deployment history once, before it waits for the other
    /// environments' leases, and marks what was current then: a deployment rolled back
    /// at stage level meanwhile is marked again (its level, reason and time overwritten)
    /// and one made meanwhile is not marked
    /// (`a_full_level_rollback_marks_what_runs_after_it_waited`).
    pub full_level_reads_stale_history: bool,
    /// Full level redeploys every environment, one an open incident holds for a person
    /// too (`a_full_level_rollback_leaves_a_held_environment_alone`).
    pub full_level_redeploys_held_environments: bool,
}

/// After a successful rollback the environment runs its last known good version: for
/// each environment a succeeded rollback put back, as long as nothing succeeded there
/// since, the deployer runs the rollback's target and the store's last known good
/// deployment of that environment is of that version.
pub fn rolled_back_to_last_known_good(sim: &Sim, known: KnownBugs) -> Vec<String> {
    let mut bad = Vec::new();
    let records = sim.store.rollbacks(usize::MAX).unwrap_or_default();
    let deployments = sim.store.all_deployments();
    let calls = sim.timeline.rollbacks();
    let entries = sim.timeline.entries();
    for r in records
        .iter()
        .filter(|r| r.status == RollbackStatus::Succeeded)
    {
        let Some(run) = deployments
            .iter()
            .find(|d| d.record.deployment_id == r.deployment_id)
            .map(|d| d.record.run_id)
        else {
            continue;
        };
        let Some(target) = r.to_version.as_deref() else {
            bad.push(format!(
                "the rollback of {} succeeded without a target version",
                r.deployment_id
            ));
            continue;
        };
        for c in calls_of(&calls, r, run).filter(|c| c.result == DeployResult::Succeeded) {
            let env = c.environment.as_str();
            let later_call = entries.iter().any(|e| {
                e.environment == env
                    && e.result == DeployResult::Succeeded
                    && e.start_tick > c.end_tick
            });
            let later_success = deployments.iter().any(|d| {
                d.record.environment == env
                    && d.started_tick > c.end_tick
                    && d.record.status == DeploymentStatus::Succeeded
            });
            if later_call || later_success {
                continue;
            }
            let running = sim.deployer(env).running();
            if running.as_deref() != Some(target) {
                bad.push(format!(
                    "after the {:?} level rollback of {} to {}, {env} runs {:?}",
                    r.level,
                    r.deployment_id,
                    short(target),
                    running.as_deref().map(short)
                ));
            }
            let good = sim.store.last_known_good(env).ok().flatten();
            // The known bug: the last known good is a succeeded deployment newer than
            // the target, in an environment the rollback skipped it in.
            let restored_bad = known.full_level_may_restore_the_bad_version
                && r.to_version.as_ref() == Some(&r.from_version);
            let tolerated = restored_bad
                || (known.skipped_good_deployments_stay_good
                    || known.full_level_reads_stale_history)
                    && good.as_ref().is_some_and(|g| {
                        deployments.iter().any(|d| {
                            d.record.environment == env
                                && d.record.version == target
                                && d.record.status == DeploymentStatus::Succeeded
                                && d.record.start_time < g.start_time
                        })
                    });
            if !tolerated && good.as_ref().map(|d| d.version.as_str()) != Some(target) {
                bad.push(format!(
                    "after the {:?} level rollback of {} to {}, the last known good deployment of {env} is {:?} (version {:?}), not the version it runs",
                    r.level,
                    r.deployment_id,
                    short(target),
                    good.as_ref().map(|d| d.deployment_id.as_str()),
                    good.as_ref().map(|d| short(&d.version))
                ));
            }
        }
    }
    bad
}

/// An environment an incident holds takes no automatic deployment until the incident
/// is resolved: no deployer `deploy` call into it, no deployment record opened there,
/// and no redeploy by a rollback of another environment's deployment (a full level),
/// between the commit of `incident_opened` and that of `incident_resolved`. (Rolling
/// back the held environment's own deployments — what the person does — is allowed.)
pub fn held_environments_take_no_deployments(sim: &Sim, known: KnownBugs) -> Vec<String> {
    let mut bad = Vec::new();
    let events = sim.store.all_events();
    let deployments = sim.store.all_deployments();
    let entries = sim.timeline.entries();
    let records = sim.store.rollbacks(usize::MAX).unwrap_or_default();
    let calls = sim.timeline.rollbacks();
    // Each rollback call, with the environment of the deployment it rolled back.
    let mut from_env: Vec<(&DeployEntry, &str)> = Vec::new();
    for r in &records {
        let Some(run) = deployments
            .iter()
            .find(|d| d.record.deployment_id == r.deployment_id)
            .map(|d| d.record.run_id)
        else {
            continue;
        };
        from_env.extend(calls_of(&calls, r, run).map(|c| (c, r.environment.as_str())));
    }
    for opened in events
        .iter()
        .filter(|e| e.event.kind == EventKind::IncidentOpened)
    {
        let Some(env) = opened.event.environment.as_deref() else {
            continue;
        };
        let until = events
            .iter()
            .find(|e| {
                e.tick > opened.tick
                    && e.event.kind == EventKind::IncidentResolved
                    && e.event.environment.as_deref() == Some(env)
            })
            .map_or(u64::MAX, |e| e.tick);
        let held = |t: u64| t > opened.tick && t < until;
        for c in entries
            .iter()
            .filter(|c| c.environment == env && c.kind == CallKind::Deploy && held(c.start_tick))
        {
            bad.push(format!(
                "run {:?} deployed {} into {env} (tick {}) while an incident held it (ticks {}..{until})",
                c.run,
                short(&c.version),
                c.start_tick,
                opened.tick
            ));
        }
        for d in deployments
            .iter()
            .filter(|d| d.record.environment == env && held(d.started_tick))
        {
            bad.push(format!(
                "deployment {} (run {}) was opened in {env} while an incident held it",
                d.record.deployment_id, d.record.run_id
            ));
        }
        if known.full_level_redeploys_held_environments {
            continue;
        }
        for (c, from) in from_env
            .iter()
            .filter(|(c, from)| c.environment == env && *from != env && held(c.start_tick))
        {
            bad.push(format!(
                "a rollback of a deployment in {from} redeployed {} into {env} (tick {}) while an incident held it (ticks {}..{until})",
                short(&c.version),
                c.start_tick,
                opened.tick
            ));
        }
    }
    bad
}

/// DESIGN invariant 4, every event is delivered: the events committed through `apply`
/// (the store's event log is the outbox) are exactly the events the observer (the
/// notifier) was told, each once; and every state change is announced by its event in
/// the same batch (a deployment opened, closed, rolled back; an incident opened; a run
/// ended).
pub fn events_delivered(sim: &Sim) -> Vec<String> {
    let mut bad = Vec::new();
    let applies = sim.store.applies();
    let key = |e: &ferry_core::Event| format!("{e:?}");
    let mut committed: Vec<String> = Vec::new();
    for a in applies.iter().filter(|a| a.error.is_none()) {
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for c in &a.changes {
            let k = match c {
                Change::DeploymentStarted(_) => "deployment_started",
                Change::DeploymentFinished {
                    status: DeploymentStatus::Succeeded,
                    ..
                } => "deployment_succeeded",
                Change::DeploymentFinished { .. } => "deployment_failed",
                Change::IncidentOpened { .. } => "incident_opened",
                Change::AlarmState { .. } => "alarm_state_changed",
                Change::Run { status, .. } if status.is_terminal() => "run_ended",
                Change::Event(e) => {
                    committed.push(key(e));
                    continue;
                }
                _ => continue,
            };
            *kinds.entry(k).or_default() += 1;
        }
        let events: Vec<&ferry_core::Event> = a
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Event(e) => Some(e),
                _ => None,
            })
            .collect();
        let n = |kinds: &[EventKind]| events.iter().filter(|e| kinds.contains(&e.kind)).count();
        let announced = [
            ("deployment_started", n(&[EventKind::DeploymentStarted])),
            ("deployment_succeeded", n(&[EventKind::DeploymentSucceeded])),
            ("deployment_failed", n(&[EventKind::DeploymentFailed])),
            ("incident_opened", n(&[EventKind::IncidentOpened])),
            ("alarm_state_changed", n(&[EventKind::AlarmStateChanged])),
            (
                "run_ended",
                n(&[
                    EventKind::RunSucceeded,
                    EventKind::RunFailed,
                    EventKind::RunCancelled,
                    EventKind::RunSuperseded,
                ]),
            ),
        ];
        for (k, events) in announced {
            let changes = kinds.get(k).copied().unwrap_or(0);
            if changes != events {
                bad.push(format!(
                    "a batch of run {} (tick {}) has {changes} `{k}` change(s) but {events} event(s) announcing them (invariant 4)",
                    a.run, a.tick
                ));
            }
        }
        let rolled = a
            .changes
            .iter()
            .any(|c| matches!(c, Change::DeploymentRolledBack { .. }));
        if rolled && n(&[EventKind::RollbackSucceeded]) != 1 {
            bad.push(format!(
                "a batch of run {} (tick {}) marks deployments rolled_back without one rollback_succeeded event (invariant 4)",
                a.run, a.tick
            ));
        }
    }
    // The log holds exactly what was committed (plus what `resolve`, pushed alarms and
    // the alarms on the pipeline itself append outside any batch, as do freezes —
    // `Store::freeze`, also by a refused rollback-unsafe rollback).
    let stored: Vec<String> = sim
        .store
        .all_events()
        .iter()
        .filter(|e| {
            !(e.event.run.is_none()
                && matches!(
                    e.event.kind,
                    EventKind::IncidentResolved
                        | EventKind::AlarmStateChanged
                        | EventKind::PipelineAlarm
                        | EventKind::FreezeSet
                        | EventKind::FreezeLifted
                ))
        })
        .map(|e| key(&e.event))
        .collect();
    let told: Vec<String> = sim
        .observer
        .events()
        .iter()
        .filter(|e| {
            !(e.run.is_none() && matches!(e.kind, EventKind::FreezeSet | EventKind::FreezeLifted))
        })
        .map(key)
        .collect();
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let (committed, stored, told) = (sorted(committed), sorted(stored), sorted(told));
    if committed != stored {
        bad.push(format!(
            "the event log ({} events) is not what was committed ({} events)",
            stored.len(),
            committed.len()
        ));
    }
    if told != stored {
        let missing: Vec<&String> = stored
            .iter()
            .filter(|e| !told.contains(e))
            .take(3)
            .collect();
        let extra: Vec<&String> = told
            .iter()
            .filter(|e| !stored.contains(e))
            .take(3)
            .collect();
        bad.push(format!(
            "the notifier was told {} events, the log holds {} (invariant 4); not told: {missing:?}; told but not stored: {extra:?}",
            told.len(),
            stored.len()
        ));
    }
    bad
}

/// Seed §13.1 question 3: no rollback other than one a person forced
/// (`--accept-data-loss`) took back a rollback-unsafe deployment.
pub fn unsafe_never_rolled_back_automatically(sim: &Sim) -> Vec<String> {
    let mut bad = Vec::new();
    let records = sim.store.rollbacks(usize::MAX).unwrap_or_default();
    let forced = |r: &ferry_core::rollback::RollbackRecord| {
        r.status == RollbackStatus::Succeeded
            && matches!(
                r.trigger,
                Trigger::Manual {
                    accept_data_loss: true,
                    ..
                }
            )
    };
    for d in sim.store.all_deployments().into_iter().map(|d| d.record) {
        if !d.rollback_unsafe || d.status != DeploymentStatus::RolledBack {
            continue;
        }
        let level = d.rollback_level;
        let by_person = records.iter().any(|r| {
            forced(r)
                && r.level == level
                && (level == Some(RollbackLevel::Full) || r.environment == d.environment)
        });
        if !by_person {
            bad.push(format!(
                "rollback-unsafe deployment {} ({}) was rolled back without a person accepting the data loss",
                d.deployment_id,
                d.rollback_unsafe_reason.as_deref().unwrap_or("-")
            ));
        }
    }
    bad
}

/// Every check of the rollback world: [`no_overlap`], [`promoted_only_after_previous`],
/// [`rollbacks_recorded_once`], [`rolled_back_to_last_known_good`],
/// [`held_environments_take_no_deployments`], [`events_delivered`] and
/// [`unsafe_never_rolled_back_automatically`]. `automatic` is
/// the pipeline's `rollback.automatic`.
pub fn after_rollbacks(sim: &Sim, automatic: bool, known: KnownBugs) -> Vec<String> {
    let mut bad = no_overlap(sim);
    bad.extend(promoted_only_after_previous(sim));
    bad.extend(rollbacks_recorded_once(sim, automatic, known));
    bad.extend(rolled_back_to_last_known_good(sim, known));
    bad.extend(held_environments_take_no_deployments(sim, known));
    bad.extend(events_delivered(sim));
    bad.extend(unsafe_never_rolled_back_automatically(sim));
    bad
}
