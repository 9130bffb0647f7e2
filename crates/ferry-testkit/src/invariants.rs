//! Checks of the seed's correctness properties (§12) and DESIGN.md's invariants over a
//! simulated world after runs were driven. Each returns the violations it found, as
//! sentences; an empty list means the property holds.

use crate::sim::Sim;
use crate::store::StoredEvent;
use ferry_core::run::RunView;
use ferry_core::{DeploymentStatus, EventKind, RunId, StageStatus};
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
            if !records
                .iter()
                .any(|d| d.environment == prev && d.status == DeploymentStatus::Succeeded)
            {
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
        if (d.status == DeploymentStatus::Succeeded) != stage_ok {
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
/// agreeing with the record's status.
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
                if !records.iter().any(|d| d.environment == env && d.status == want) {
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

/// DESIGN invariant 2 over the whole world: no two deployer calls into one environment
/// were in flight at once, and no two runs' deployments of one environment (from the
/// commit of `deployment_started` to that of its end, in ticks) overlap.
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
    bad
}

/// Every per-run check that needs no scenario knowledge: [`order`], [`consistency`] and
/// [`events_paired`].
pub fn after_run(sim: &Sim, view: &RunView) -> Vec<String> {
    let mut bad = order(sim, view.id);
    bad.extend(consistency(sim, view));
    bad.extend(events_paired(sim, view.id));
    bad
}
