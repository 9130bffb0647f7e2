//! The rollback orchestrator (seed §3.4.2), performed: claim the rollback (idempotency,
//! seed Property 2), stage level first, full level when stage level fails, validation
//! after each (seed §3.4.3: stabilize, alarms, health, version), escalation when both
//! fail (seed §6.2). The decisions — targets, levels, records, events — come from
//! `ferry_core::rollback`.

use crate::driver::Engine;
use crate::ports::*;
use ferry_core::alarm::{AlarmState, Datapoint};
use ferry_core::rollback::{self, RollbackRecord, RollbackStatus, Target, Trigger};
use ferry_core::{
    Artifact, Change, DeploymentRecord, DeploymentStatus, RollbackLevel, RunId, short_sha,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// Runs not driven by a run (a manual or alarm-triggered rollback) hold leases as this
/// pseudo-run, so they wait for a run deploying there and runs wait for them.
pub const OUTSIDE_RUN: RunId = RunId(0);

/// How long a second caller waits for a rollback another process is performing.
const AWAIT_LIMIT: Duration = Duration::from_secs(30 * 60);

impl Engine<'_> {
    /// Rolls back `bad` (seed §3.4.2). `to` names a version for a manual rollback; it
    /// must once have succeeded in that environment. `lease_as` is the run whose lease
    /// on the environment the caller already holds ([`OUTSIDE_RUN`] otherwise).
    ///
    /// Idempotent: a deployment already rolled back (or being rolled back) returns the
    /// first record and redeploys nothing.
    pub fn roll_back(
        &self,
        bad: &DeploymentRecord,
        reason: &str,
        trigger: Trigger,
        to: Option<&str>,
        lease_as: RunId,
    ) -> PortResult<RollbackRecord> {
        let store = self.ports.store;
        let clock = self.ports.clock;
        let mut rec =
            RollbackRecord::start(bad, reason, trigger, &self.settings.holder, clock.now());
        if let Err(existing) = store.claim_rollback(&rec)? {
            return self.await_rollback(existing);
        }
        let history = store.deployments(None, 100_000)?;

        // Stage level: this environment back to its last known good release set.
        let stage = match to {
            Some(v) => match rollback::manual_target(&bad.environment, v, &history) {
                Ok(t) => Some(t),
                Err(why) => {
                    rec.status = RollbackStatus::Failed;
                    rec.detail.push(why.clone());
                    rec.ended_at = Some(clock.now());
                    store.update_rollback(&rec)?;
                    return Err(PortError::not_found(why));
                }
            },
            None => rollback::stage_target(bad, &history),
        };
        let Some(stage) = stage else {
            rec.status = RollbackStatus::NothingToDo;
            rec.detail.push(format!(
                "{} had no earlier successful deployment: nothing to roll back to",
                bad.environment
            ));
            rec.ended_at = Some(clock.now());
            store.update_rollback(&rec)?;
            self.note(&format!(
                "no rollback for {}: it had no earlier successful deployment",
                bad.environment
            ));
            return Ok(rec);
        };
        self.record(
            bad.run_id,
            rollback::initiated(
                &rec,
                bad,
                RollbackLevel::Stage,
                std::slice::from_ref(&stage),
                clock.now(),
            ),
        )?;
        match self.restore(&stage, bad, &mut rec, lease_as) {
            Ok(()) => {
                let ch = rollback::succeeded(
                    &rec,
                    bad,
                    std::slice::from_ref(bad),
                    RollbackLevel::Stage,
                    &stage.set.version,
                    clock.now(),
                );
                self.record(bad.run_id, ch)?;
                return self.finish(
                    rec,
                    RollbackStatus::Succeeded,
                    RollbackLevel::Stage,
                    Some(&stage.set.version),
                );
            }
            Err(why) => {
                rec.detail.push(format!("stage level failed: {why}"));
                self.record(
                    bad.run_id,
                    rollback::level_failed(bad, RollbackLevel::Stage, &why, clock.now()),
                )?;
            }
        }
        if to.is_some() {
            // A manual rollback to a named version does not widen to every environment.
            let why = rec.detail.last().cloned().unwrap_or_default();
            return self.escalate(rec, bad, &why);
        }

        // Full level: every environment, production first, back to the newest version
        // that succeeded in all of them.
        let order: Vec<String> = self
            .pipeline
            .environments
            .iter()
            .map(|e| e.name.clone())
            .collect();
        let targets = match rollback::full_targets(&order, &history) {
            Ok(t) => t,
            Err(why) => {
                rec.detail.push(format!("full level impossible: {why}"));
                self.record(
                    bad.run_id,
                    rollback::level_failed(bad, RollbackLevel::Full, &why, clock.now()),
                )?;
                return self.escalate(rec, bad, &why);
            }
        };
        self.record(
            bad.run_id,
            rollback::initiated(&rec, bad, RollbackLevel::Full, &targets, clock.now()),
        )?;
        let mut rolled_back = vec![bad.clone()];
        for t in &targets {
            // The deployment each environment runs now, if it is not the target already.
            if let Some(current) = history
                .iter()
                .filter(|d| {
                    d.environment == t.environment && d.status != DeploymentStatus::RolledBack
                })
                .max_by_key(|d| (d.start_time, d.deployment_id.clone()))
                && current.version != t.set.version
                && current.deployment_id != bad.deployment_id
            {
                rolled_back.push(current.clone());
            }
            let lease = if t.environment == bad.environment {
                lease_as
            } else {
                OUTSIDE_RUN
            };
            if let Err(why) = self.restore(t, bad, &mut rec, lease) {
                let why = format!("{}: {why}", t.environment);
                rec.detail.push(format!("full level failed in {why}"));
                self.record(
                    bad.run_id,
                    rollback::level_failed(bad, RollbackLevel::Full, &why, clock.now()),
                )?;
                return self.escalate(rec, bad, &why);
            }
        }
        let version = targets
            .first()
            .map(|t| t.set.version.clone())
            .unwrap_or_default();
        let ch = rollback::succeeded(
            &rec,
            bad,
            &rolled_back,
            RollbackLevel::Full,
            &version,
            clock.now(),
        );
        self.record(bad.run_id, ch)?;
        self.finish(
            rec,
            RollbackStatus::Succeeded,
            RollbackLevel::Full,
            Some(&version),
        )
    }

    /// Puts one environment back to one release set and validates it. Errors are the
    /// reasons it did not work, for people.
    fn restore(
        &self,
        t: &Target,
        bad: &DeploymentRecord,
        rec: &mut RollbackRecord,
        lease_as: RunId,
    ) -> Result<(), String> {
        let clock = self.ports.clock;
        let env = &t.environment;
        let held_already = lease_as != OUTSIDE_RUN;
        let lease = Lease {
            environment: env.clone(),
            run: lease_as,
            holder: self.settings.holder.clone(),
            expires_at: clock.now().plus(self.settings.lease_ttl * 20),
        };
        if !held_already {
            self.wait_for_lease(&lease).map_err(|e| e.message)?;
        }
        let result = self.restore_held(t, bad, rec);
        if !held_already {
            let _ = self.ports.store.release_lease(env, lease_as);
        }
        result
    }

    fn restore_held(
        &self,
        t: &Target,
        bad: &DeploymentRecord,
        rec: &mut RollbackRecord,
    ) -> Result<(), String> {
        let clock = self.ports.clock;
        let env = &t.environment;
        // The whole release set: the pipeline file that deployed it decides how.
        let deploy = self.recorded_deploy(t).map_err(|e| e.message)?;
        let deployer = self
            .ports
            .deployers
            .deployer(env, &deploy)
            .map_err(|e| e.message)?;
        if !t.set.artifact_location.is_empty() {
            match self.retry_plain(|| self.ports.artifacts.digest(&t.set.artifact_location)) {
                Ok(d) if d == t.set.artifact_digest => {}
                Ok(d) => {
                    return Err(format!(
                        "artifact `{}` of {} changed since it was built (expected {}, found {d}); refusing to restore it",
                        t.set.artifact_location,
                        short_sha(&t.set.version),
                        t.set.artifact_digest
                    ));
                }
                Err(e) => return Err(e.message),
            }
        }
        let mut vars = BTreeMap::new();
        vars.insert("FERRY_ENV".to_string(), env.clone());
        vars.insert("FERRY_VERSION".to_string(), t.set.version.clone());
        vars.insert("FERRY_PREVIOUS_VERSION".to_string(), bad.version.clone());
        vars.insert("FERRY_ROLLBACK".to_string(), "1".to_string());
        vars.insert("FERRY_ROLLBACK_REASON".to_string(), rec.reason.clone());
        vars.insert("FERRY_RUN_ID".to_string(), bad.run_id.to_string());
        vars.insert("FERRY_PIPELINE".to_string(), self.pipeline.name.clone());
        vars.insert(
            "FERRY_ARTIFACT".to_string(),
            t.set.artifact_location.clone(),
        );
        vars.insert(
            "FERRY_ARTIFACT_DIGEST".to_string(),
            t.set.artifact_digest.clone(),
        );
        let log = self.layout.logs.join("rollbacks").join(format!(
            "{}-{}.log",
            bad.deployment_id.replace(['#', '/'], "-"),
            env
        ));
        let req = DeployRequest {
            environment: env.clone(),
            version: t.set.version.clone(),
            artifact: Artifact {
                digest: t.set.artifact_digest.clone(),
                location: t.set.artifact_location.clone(),
                size: 0,
            },
            env: vars,
            cwd: self.layout.project.clone(),
            log: log.clone(),
        };
        self.note(&format!(
            "rolling back {env} to {}",
            short_sha(&t.set.version)
        ));
        self.retry_plain(|| deployer.rollback(&req)).map_err(|e| {
            format!(
                "redeploying {} failed: {}",
                short_sha(&t.set.version),
                e.message
            )
        })?;
        rec.detail.push(format!(
            "{env}: {} restored (log {})",
            short_sha(&t.set.version),
            log.display()
        ));

        // Validation (seed §3.4.3): stabilize, alarms clear, health 2xx, version matches.
        let v = &self.pipeline.rollback.validate;
        clock.sleep(v.stabilize);
        for alarm in self.pipeline.alarms_for(env) {
            if alarm.advisory {
                continue;
            }
            if matches!(alarm.source, ferry_config::AlarmSource::External) {
                if let Ok(Some((AlarmState::Alarm, why, at))) =
                    self.ports.store.alarm_state(&alarm.name)
                    && at >= rec.started_at
                {
                    return Err(format!(
                        "alarm {} is still in ALARM after the rollback ({why})",
                        alarm.name
                    ));
                }
                continue;
            }
            let (dp, detail) = self.ports.probe.sample(alarm);
            if dp == Datapoint::Breaching {
                return Err(format!(
                    "alarm {} still breaches after the rollback ({detail})",
                    alarm.name
                ));
            }
        }
        self.retry_plain(|| deployer.healthy(v.health_timeout))
            .map_err(|e| format!("not healthy after the rollback: {}", e.message))?;
        match self.retry_plain(|| deployer.current_version()) {
            Ok(Some(running)) if running == t.set.version => {}
            Ok(other) => {
                return Err(format!(
                    "{env} runs {} after the rollback, not {}",
                    other.as_deref().map(short_sha).unwrap_or("nothing"),
                    short_sha(&t.set.version)
                ));
            }
            Err(e) => return Err(format!("cannot read the running version: {}", e.message)),
        }
        rec.detail.push(format!(
            "{env}: validated (alarms clear, healthy, runs {})",
            short_sha(&t.set.version)
        ));
        Ok(())
    }

    /// The `deploy:` section that deployed a release set: from the pipeline file it
    /// recorded, or the current one when that file is not known.
    fn recorded_deploy(&self, t: &Target) -> PortResult<ferry_config::Deploy> {
        if let Some(digest) = &t.set.config_digest
            && let Some(text) = self.ports.store.config(digest)?
            && let Ok(p) = ferry_config::parse(&text, "ferry.yml")
            && let Some(e) = p.environment(&t.environment)
        {
            return Ok(e.deploy.clone());
        }
        self.pipeline
            .environment(&t.environment)
            .map(|e| e.deploy.clone())
            .ok_or_else(|| {
                PortError::permanent(format!(
                    "environment `{}` is not in the pipeline",
                    t.environment
                ))
            })
    }

    fn finish(
        &self,
        mut rec: RollbackRecord,
        status: RollbackStatus,
        level: RollbackLevel,
        to: Option<&str>,
    ) -> PortResult<RollbackRecord> {
        rec.status = status;
        rec.level = Some(level);
        rec.to_version = to.map(str::to_string);
        rec.ended_at = Some(self.ports.clock.now());
        self.ports.store.update_rollback(&rec)?;
        Ok(rec)
    }

    /// Both levels failed: an incident, the environment held, a critical event.
    fn escalate(
        &self,
        mut rec: RollbackRecord,
        bad: &DeploymentRecord,
        why: &str,
    ) -> PortResult<RollbackRecord> {
        let now = self.ports.clock.now();
        self.record(bad.run_id, rollback::escalate(&rec, bad, why, now))?;
        rec.incident = self.ports.store.hold(&bad.environment)?.map(|i| i.id);
        rec.status = RollbackStatus::Failed;
        rec.ended_at = Some(now);
        self.ports.store.update_rollback(&rec)?;
        Ok(rec)
    }

    /// A second caller for the same deployment: wait while the first is at work, then
    /// return its record (seed Property 2).
    fn await_rollback(&self, mut rec: RollbackRecord) -> PortResult<RollbackRecord> {
        let clock = self.ports.clock;
        let start = clock.now();
        while rec.status == RollbackStatus::InProgress {
            if clock.now().since(start) > AWAIT_LIMIT {
                return Err(PortError::conflict(format!(
                    "the rollback of {} is still in progress by {}",
                    rec.deployment_id, rec.holder
                )));
            }
            clock.sleep(self.settings.poll);
            match self.ports.store.rollback(&rec.deployment_id)? {
                Some(r) => rec = r,
                None => break,
            }
        }
        Ok(rec)
    }

    fn wait_for_lease(&self, lease: &Lease) -> PortResult<()> {
        let clock = self.ports.clock;
        let mut told = false;
        loop {
            let now = clock.now();
            let mut want = lease.clone();
            want.expires_at = now.plus(self.settings.lease_ttl * 20);
            match self.ports.store.acquire_lease(&want, now)? {
                Ok(()) => return Ok(()),
                Err(holder) => {
                    if !told {
                        self.note(&format!(
                            "waiting for environment {}: run {} ({}) is deploying there",
                            lease.environment, holder.run, holder.holder
                        ));
                        told = true;
                    }
                    clock.sleep(self.settings.poll);
                }
            }
        }
    }

    /// Records changes of a rollback against the run that made the deployment.
    fn record(&self, run: RunId, changes: Vec<Change>) -> PortResult<()> {
        self.ports.store.apply(run, &changes)?;
        self.ports.observer.rolled(&changes);
        Ok(())
    }

    fn note(&self, message: &str) {
        self.ports.observer.notice(message);
    }
}
