//! The rollback orchestrator (seed §3.4.2), performed: claim the rollback (idempotency,
//! seed Property 2), stage level first, full level when stage level fails, validation
//! after each (seed §3.4.3: stabilize, alarms, health, version), escalation when both
//! fail (seed §6.2). The decisions — targets, levels, records, events — come from
//! `ferry_core::rollback`.

use crate::driver::{Engine, Layout, Settings};
use crate::ports::*;
use ferry_config::Pipeline;
use ferry_core::alarm::{AlarmState, Datapoint};
use ferry_core::rollback::{self, RollbackRecord, RollbackStatus, Target, Trigger};
use ferry_core::{
    Artifact, Change, DeploymentRecord, DeploymentStatus, RollbackLevel, RunId, Timestamp,
    short_sha,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How long a second caller waits for a rollback another live process is performing.
const AWAIT_LIMIT: Duration = Duration::from_secs(30 * 60);

/// What the rollback orchestrator needs from the outside world: the [`Ledger`] (not the
/// whole `Store`), so a runtime that keeps only a deployment ledger (the rollback Lambda
/// on DynamoDB) runs the same orchestrator.
pub struct RollbackPorts<'a> {
    pub store: &'a dyn Ledger,
    pub clock: &'a dyn Clock,
    /// Checks out the restored version, so its own scripts run.
    pub source: &'a dyn Source,
    /// Verifies the restored artifact's digest.
    pub artifacts: &'a dyn ArtifactStore,
    /// Samples the restored release's probe alarms (validation, seed §3.4.3).
    pub probe: &'a dyn AlarmProbe,
    pub observer: &'a dyn Observer,
    pub deployers: &'a dyn DeployerFactory,
    pub liveness: &'a dyn Liveness,
}

/// The rollback orchestrator (seed §3.4.2) over [`RollbackPorts`]. `Engine::roll_back`
/// builds one from the engine's ports.
pub struct Orchestrator<'a> {
    pub pipeline: &'a Pipeline,
    pub ports: RollbackPorts<'a>,
    pub layout: Layout,
    pub settings: Settings,
}

impl Engine<'_> {
    /// The rollback orchestrator over this engine's ports.
    pub fn orchestrator(&self) -> Orchestrator<'_> {
        Orchestrator {
            pipeline: self.pipeline,
            ports: RollbackPorts {
                store: self.ports.store,
                clock: self.ports.clock,
                source: self.ports.source,
                artifacts: self.ports.artifacts,
                probe: self.ports.probe,
                observer: self.ports.observer,
                deployers: self.ports.deployers,
                liveness: self.ports.liveness,
            },
            layout: self.layout.clone(),
            settings: self.settings.clone(),
        }
    }

    /// [`Orchestrator::roll_back`], then the pipeline's own alarms are evaluated again
    /// (a rollback may change their state).
    pub fn roll_back(
        &self,
        bad: &DeploymentRecord,
        reason: &str,
        trigger: Trigger,
        to: Option<&str>,
        in_run: Option<RunId>,
    ) -> PortResult<RollbackRecord> {
        let result = self
            .orchestrator()
            .roll_back(bad, reason, trigger, to, in_run);
        self.check_pipeline_alarms();
        result
    }
}

impl Orchestrator<'_> {
    /// Rolls back `bad` (seed §3.4.2). `to` names a version for a manual rollback; it
    /// must once have succeeded in that environment (checked before anything is
    /// recorded). `in_run` is the run holding the environment's lease when the caller is
    /// that run; otherwise the lease is taken first, waiting for a run deploying there
    /// (which may roll `bad` back itself meanwhile).
    ///
    /// Idempotent (seed Property 2): a deployment already rolled back, or being rolled
    /// back by a live process, returns the first record and redeploys nothing; a
    /// rollback left unfinished by a killed ferry is taken over.
    pub fn roll_back(
        &self,
        bad: &DeploymentRecord,
        reason: &str,
        trigger: Trigger,
        to: Option<&str>,
        in_run: Option<RunId>,
    ) -> PortResult<RollbackRecord> {
        let manual = match to {
            Some(v) => {
                let history = self.ports.store.deployments(None, 100_000)?;
                Some(
                    rollback::manual_target(&bad.environment, v, &history)
                        .map_err(PortError::not_found)?,
                )
            }
            None => None,
        };
        if let Some(m) = &manual
            && m.set.version == bad.version
        {
            // Nothing to do, and nothing recorded: a later rollback of this deployment
            // (an alarm, say) must not find a claim that did nothing.
            let now = self.ports.clock.now();
            let mut rec = RollbackRecord::start(bad, reason, trigger, &self.settings.holder, now);
            rec.status = RollbackStatus::NothingToDo;
            rec.to_version = Some(m.set.version.clone());
            rec.detail.push(format!(
                "{} already runs {}",
                bad.environment,
                short_sha(&m.set.version)
            ));
            rec.ended_at = Some(now);
            return Ok(rec);
        }
        // A person's rollback of a rollback-unsafe deployment is refused before anything
        // is recorded, unless they accepted the data loss (seed §13.1 question 3).
        if let Trigger::Manual {
            accept_data_loss: false,
            ..
        } = &trigger
        {
            let history = self.ports.store.deployments(None, 100_000)?;
            let target = manual
                .clone()
                .or_else(|| rollback::stage_target(bad, &history));
            let found = match &target {
                Some(t) => rollback::unsafe_to_restore(bad, std::slice::from_ref(t), &history),
                None => Vec::new(),
            };
            if !found.is_empty() {
                let list: Vec<String> = found.iter().map(ToString::to_string).collect();
                return Err(PortError::conflict(format!(
                    "refusing to roll back {}: it would take back a rollback-unsafe deployment ({}); the data would be lost or the schema incompatible. Fix forward, or pass --accept-data-loss to roll back anyway",
                    bad.environment,
                    list.join("; ")
                )));
            }
        }
        let lease_as = in_run.unwrap_or(self.settings.outside_run);
        if in_run.is_none() {
            self.wait_for_lease(&bad.environment, lease_as)?;
        }
        let result = self.roll_back_held(bad, reason, trigger, manual, lease_as);
        if in_run.is_none() {
            let _ = self.ports.store.release_lease(&bad.environment, lease_as);
        }
        result
    }

    fn roll_back_held(
        &self,
        bad: &DeploymentRecord,
        reason: &str,
        trigger: Trigger,
        manual: Option<Target>,
        lease_as: RunId,
    ) -> PortResult<RollbackRecord> {
        let store = self.ports.store;
        let clock = self.ports.clock;
        let mut rec =
            RollbackRecord::start(bad, reason, trigger, &self.settings.holder, clock.now());
        if let Err(existing) = store.claim_rollback(&rec)? {
            let retry = matches!(
                existing.status,
                RollbackStatus::Failed | RollbackStatus::NothingToDo | RollbackStatus::NotPerformed
            ) && matches!(rec.trigger, Trigger::Manual { .. });
            if retry {
                // A person asks again after a failed (or empty) attempt, e.g. after
                // `ferry resolve`: a new attempt replaces the old record. Automatic
                // triggers never retry on their own. The new attempt starts strictly
                // after the old one ended, so their events never mix.
                if existing.ended_at.is_some_and(|e| e >= clock.now()) {
                    clock.sleep(Duration::from_millis(1));
                }
                rec.started_at = clock.now();
                rec.detail.push(format!(
                    "an earlier attempt ended {}: {}",
                    existing.status,
                    existing.detail.join("; ")
                ));
                store.update_rollback(&rec)?;
            }
            let existing = if retry { None } else { Some(existing) };
            match existing
                .map(|e| self.await_rollback(e))
                .transpose()?
                .flatten()
            {
                _ if retry => {}
                // `bad` is rolled back already (the stopped process recorded the outcome
                // but did not close its record, or another rollback took it back since):
                // close the record, redeploying nothing.
                Some(abandoned)
                    if store
                        .deployments(Some(&bad.environment), 1_000)?
                        .iter()
                        .any(|d| {
                            d.deployment_id == bad.deployment_id
                                && d.status == DeploymentStatus::RolledBack
                        }) =>
                {
                    return self.close_recorded(abandoned, bad);
                }
                // Left unfinished by a process that is gone: carry on in its place.
                Some(abandoned) => {
                    rec.detail = abandoned.detail;
                    rec.detail.push(format!(
                        "taken over from {}, which stopped",
                        abandoned.holder
                    ));
                    store.update_rollback(&rec)?;
                }
                None => {
                    return store.rollback(&bad.deployment_id)?.ok_or_else(|| {
                        PortError::not_found(format!(
                            "the rollback of {} disappeared",
                            bad.deployment_id
                        ))
                    });
                }
            }
        }
        let history = store.deployments(None, 100_000)?;

        // Stage level: this environment back to its last known good release set.
        let stage = manual
            .clone()
            .or_else(|| rollback::stage_target(bad, &history));
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
        let one = std::slice::from_ref(&stage);
        let found = rollback::unsafe_to_restore(bad, one, &history);
        if !rollback::may_restore(&rec.trigger, &found) {
            return self.refuse_unsafe(rec, bad, RollbackLevel::Stage, &found);
        }
        let ch = rollback::initiated(&rec, bad, RollbackLevel::Stage, one, clock.now());
        self.record(bad.run_id, ch)?;
        // The failing environment itself: its lease is already held, so `Held` never
        // comes back for it.
        match self.restore(&stage, bad, &mut rec, lease_as) {
            Ok(_) => {
                let taken_back = self.taken_back(&stage, bad)?;
                let ch = rollback::succeeded(
                    &rec,
                    bad,
                    &taken_back,
                    RollbackLevel::Stage,
                    &stage.set.version,
                    clock.now(),
                );
                self.record(bad.run_id, ch)?;
                return self.finish(rec, RollbackLevel::Stage, &stage.set.version);
            }
            Err(why) => {
                rec.detail.push(format!("stage level failed: {why}"));
                let ch = rollback::level_failed(bad, RollbackLevel::Stage, &why, clock.now());
                self.record(bad.run_id, ch)?;
            }
        }
        if manual.is_some() {
            // A manual rollback to a named version does not widen to every environment.
            let why = rec.detail.last().cloned().unwrap_or_default();
            return self.escalate(rec, bad, &why);
        }

        // Full level: every environment, production first, back to the newest version
        // (other than the bad one) that succeeded in all of them.
        let order: Vec<String> = self
            .pipeline
            .environments
            .iter()
            .map(|e| e.name.clone())
            .collect();
        let targets = match rollback::full_targets(&order, &history, &bad.version) {
            Ok(t) => t,
            Err(why) => {
                rec.detail.push(format!("full level impossible: {why}"));
                let ch = rollback::level_failed(bad, RollbackLevel::Full, &why, clock.now());
                self.record(bad.run_id, ch)?;
                return self.escalate(rec, bad, &why);
            }
        };
        let found = rollback::unsafe_to_restore(bad, &targets, &history);
        if !rollback::may_restore(&rec.trigger, &found) {
            return self.refuse_unsafe(rec, bad, RollbackLevel::Full, &found);
        }
        let ch = rollback::initiated(&rec, bad, RollbackLevel::Full, &targets, clock.now());
        self.record(bad.run_id, ch)?;
        let mut taken_back: Vec<DeploymentRecord> = Vec::new();
        for t in &targets {
            match self.restore(t, bad, &mut rec, lease_as) {
                Ok(Restored::Done) => {}
                // An environment a person holds is left alone (its incident says why).
                Ok(Restored::Held(id)) => {
                    rec.detail.push(format!(
                        "{}: left alone, held by incident #{id} until `ferry resolve {}`",
                        t.environment, t.environment
                    ));
                    continue;
                }
                Err(why) => {
                    let why = format!("{}: {why}", t.environment);
                    rec.detail.push(format!("full level failed in {why}"));
                    let ch = rollback::level_failed(bad, RollbackLevel::Full, &why, clock.now());
                    self.record(bad.run_id, ch)?;
                    return self.escalate(rec, bad, &why);
                }
            }
            // What that environment ran until now, read while its lease was held.
            taken_back.extend(self.taken_back(t, bad)?);
        }
        let version = targets
            .first()
            .map(|t| t.set.version.clone())
            .unwrap_or_default();
        let ch = rollback::succeeded(
            &rec,
            bad,
            &taken_back,
            RollbackLevel::Full,
            &version,
            clock.now(),
        );
        self.record(bad.run_id, ch)?;
        self.finish(rec, RollbackLevel::Full, &version)
    }

    /// The deployments a restore of `t` took back (`bad` among them when it is in that
    /// environment), from the store as it is now.
    fn taken_back(&self, t: &Target, bad: &DeploymentRecord) -> PortResult<Vec<DeploymentRecord>> {
        let fresh = self
            .ports
            .store
            .deployments(Some(&t.environment), 100_000)?;
        Ok(
            rollback::superseded_by_restore(t, &fresh, &bad.deployment_id)
                .into_iter()
                .cloned()
                .collect(),
        )
    }

    /// Puts one environment back to one release set and validates it. The failing
    /// environment's lease is already held; another environment (full level) is entered
    /// under the same lease identity while it is restored. Errors are the reasons it did
    /// not work, for people.
    fn restore(
        &self,
        t: &Target,
        bad: &DeploymentRecord,
        rec: &mut RollbackRecord,
        lease_as: RunId,
    ) -> Result<Restored, String> {
        let other = t.environment != bad.environment;
        if other {
            // Bounded: two full level rollbacks, each holding its own environment, would
            // otherwise wait for each other forever. (The lease of another environment
            // is only taken after `restore_held`'s history read, see `taken_back`.)
            let limit = Some(self.settings.lease_ttl * 4);
            self.wait_for_lease_within(&t.environment, lease_as, limit)
                .map_err(|e| e.message)?;
            // Read under the lease: an escalation that held the environment while this
            // rollback waited for it is seen here, never after the redeploy.
            let held = self.ports.store.hold(&t.environment);
            match held {
                Ok(None) => {}
                Ok(Some(i)) => {
                    let _ = self.ports.store.release_lease(&t.environment, lease_as);
                    return Ok(Restored::Held(i.id));
                }
                Err(e) => {
                    let _ = self.ports.store.release_lease(&t.environment, lease_as);
                    return Err(e.message);
                }
            }
        }
        let result = self.restore_held(t, bad, rec);
        if other {
            let _ = self.ports.store.release_lease(&t.environment, lease_as);
        }
        result.map(|()| Restored::Done)
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
        // What the restored deployment's own deploy saw, and why it comes back.
        let mut vars = BTreeMap::new();
        for (k, v) in [
            ("FERRY_COMMIT_SHA", t.set.version.as_str()),
            ("FERRY_COMMIT_MESSAGE", t.commit_message.as_str()),
            ("FERRY_COMMIT_AUTHOR", t.commit_author.as_str()),
            ("FERRY_VERSION", t.set.version.as_str()),
            ("FERRY_PREVIOUS_VERSION", bad.version.as_str()),
            ("FERRY_ENV", env.as_str()),
            ("FERRY_STAGE", env.as_str()),
            ("FERRY_STEP", "rollback"),
            ("FERRY_PIPELINE", self.pipeline.name.as_str()),
            ("FERRY_ARTIFACT", t.set.artifact_location.as_str()),
            ("FERRY_ARTIFACT_DIGEST", t.set.artifact_digest.as_str()),
            ("FERRY_ROLLBACK", "1"),
            ("FERRY_ROLLBACK_REASON", rec.reason.as_str()),
        ] {
            vars.insert(k.to_string(), v.to_string());
        }
        vars.insert("FERRY_RUN_ID".to_string(), t.run.to_string());
        vars.insert(
            "FERRY_ROLLBACK_FROM_RUN".to_string(),
            bad.run_id.to_string(),
        );
        let stem = format!("{}-{env}", bad.deployment_id.replace(['#', '/'], "-"));
        let log = self
            .layout
            .logs
            .join("rollbacks")
            .join(format!("{stem}.log"));
        let req = DeployRequest {
            environment: env.clone(),
            version: t.set.version.clone(),
            artifact: Artifact {
                digest: t.set.artifact_digest.clone(),
                location: t.set.artifact_location.clone(),
                size: 0,
            },
            env: vars,
            cwd: self.rollback_checkout(t, &stem),
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
        // A pushed alarm counts only if it was pushed after the old release was back: the
        // ALARM that triggered the rollback says nothing about the restored one.
        let restored_at = clock.now();
        let v = &self.pipeline.rollback.validate;
        if !v.stabilize.is_zero() {
            self.note(&format!(
                "validating {env}: waiting {} for it to stabilize (rollback.validate.stabilize)",
                ferry_core::time::human(v.stabilize)
            ));
        }
        clock.sleep(v.stabilize);
        // The restored release's own alarms (its pipeline file may watch another port).
        let recorded = self.recorded_pipeline(t).map_err(|e| e.message)?;
        let alarms_of = recorded.as_ref().unwrap_or(self.pipeline);
        for alarm in alarms_of.alarms_for(env) {
            if alarm.advisory {
                continue;
            }
            if matches!(alarm.source, ferry_config::AlarmSource::External) {
                if let Ok(Some((AlarmState::Alarm, why, at))) =
                    self.ports.store.alarm_state(&alarm.name)
                    && at > restored_at
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

    /// A checkout of the restored version's commit, so a redeploy runs that version's
    /// own scripts; the project folder when the commit cannot be checked out.
    fn rollback_checkout(&self, t: &Target, stem: &str) -> PathBuf {
        let dir = self.layout.work.join(format!("rollback-{stem}"));
        match self.ports.source.checkout(&t.set.version, &dir) {
            Ok(()) => dir,
            // Already there: a rollback taken over after a crash.
            Err(e) if e.kind == PortErrorKind::Conflict => dir,
            Err(_) => self.layout.project.clone(),
        }
    }

    /// The pipeline file that deployed a release set (its text is in the store), or the
    /// current one when that file is not known.
    fn recorded_pipeline(&self, t: &Target) -> PortResult<Option<ferry_config::Pipeline>> {
        if let Some(digest) = &t.set.config_digest
            && let Some(text) = self.ports.store.config(digest)?
            && let Ok(p) = ferry_config::parse(&text, "ferry.yml")
            && p.environment(&t.environment).is_some()
        {
            return Ok(Some(p));
        }
        Ok(None)
    }

    /// The `deploy:` section that deployed a release set: from the pipeline file it
    /// recorded, or the current one when that file is not known.
    fn recorded_deploy(&self, t: &Target) -> PortResult<ferry_config::Deploy> {
        if let Some(p) = self.recorded_pipeline(t)?
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
        level: RollbackLevel,
        to: &str,
    ) -> PortResult<RollbackRecord> {
        rec.status = RollbackStatus::Succeeded;
        rec.level = Some(level);
        rec.to_version = Some(to.to_string());
        rec.ended_at = Some(self.ports.clock.now());
        self.ports.store.update_rollback(&rec)?;
        Ok(rec)
    }

    /// Closes the record of a rollback whose process stopped, `bad` being rolled back
    /// already. By this very rollback (the reason it recorded, at or after it began):
    /// succeeded, at the level and time on `bad`'s record, to what the environment runs
    /// now. By another one since: nothing to do, saying so.
    fn close_recorded(
        &self,
        mut rec: RollbackRecord,
        bad: &DeploymentRecord,
    ) -> PortResult<RollbackRecord> {
        let store = self.ports.store;
        let done = store
            .deployments(Some(&bad.environment), 1_000)?
            .into_iter()
            .find(|d| d.deployment_id == bad.deployment_id);
        let ours = done.as_ref().is_some_and(|d| {
            d.rollback_reason.as_deref() == Some(rec.reason.as_str())
                && d.rollback_time.is_some_and(|t| t >= rec.started_at.0)
        });
        let stopped = rec.holder.clone();
        rec.holder = self.settings.holder.clone();
        if ours {
            rec.detail.push(format!(
                "closed by {}: {stopped} stopped after the rollback was recorded",
                rec.holder
            ));
            rec.status = RollbackStatus::Succeeded;
            rec.level = done.as_ref().and_then(|d| d.rollback_level);
            rec.to_version = store
                .current_deployment(&bad.environment)?
                .map(|d| d.version);
            rec.ended_at = Some(
                done.and_then(|d| d.rollback_time)
                    .map_or_else(|| self.ports.clock.now(), Timestamp),
            );
        } else {
            rec.detail.push(format!(
                "closed by {}: {stopped} stopped, and {} was rolled back meanwhile by another rollback ({})",
                rec.holder,
                bad.version,
                done.and_then(|d| d.rollback_reason)
                    .unwrap_or_else(|| "reason not recorded".into())
            ));
            rec.status = RollbackStatus::NothingToDo;
            rec.ended_at = Some(self.ports.clock.now());
        }
        store.update_rollback(&rec)?;
        Ok(rec)
    }

    /// A level that would take back a rollback-unsafe deployment (seed §13.1 question
    /// 3): nothing is redeployed; every environment concerned is frozen (a `Freeze` with
    /// the reason, lifted by `ferry unfreeze`), an incident holds `bad`'s environment
    /// (`incident_opened` with the reason), and the rollback is recorded `not_performed`,
    /// so a person decides.
    fn refuse_unsafe(
        &self,
        mut rec: RollbackRecord,
        bad: &DeploymentRecord,
        level: RollbackLevel,
        found: &[rollback::UnsafeDeployment],
    ) -> PortResult<RollbackRecord> {
        let now = self.ports.clock.now();
        let why = rollback::unsafe_reason(level, found);
        let mut envs: Vec<&str> = vec![bad.environment.as_str()];
        for f in found {
            if !envs.contains(&f.environment.as_str()) {
                envs.push(&f.environment);
            }
        }
        for env in envs {
            let f = self
                .ports
                .store
                .freeze(&rollback::unsafe_freeze(env, &why, now))?;
            // The store appended its `freeze_set` event: the notifier hears of it too.
            self.ports.observer.rolled(&[Change::Event(f.set_event())]);
        }
        self.record(
            bad.run_id,
            rollback::not_performed(&rec, bad, level, found, now),
        )?;
        rec.incident = self.ports.store.hold(&bad.environment)?.map(|i| i.id);
        rec.status = RollbackStatus::NotPerformed;
        rec.detail.push(why.clone());
        rec.ended_at = Some(now);
        self.ports.store.update_rollback(&rec)?;
        self.note(&format!("{} not rolled back: {why}", bad.environment));
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

    /// A second caller for the same deployment: waits while a live process is at work,
    /// then lets the caller return its record (`None`); `Some(record)` when the process
    /// that claimed it is gone and the caller must finish the job.
    fn await_rollback(&self, mut rec: RollbackRecord) -> PortResult<Option<RollbackRecord>> {
        let clock = self.ports.clock;
        let start = clock.now();
        let mut told = false;
        while rec.status == RollbackStatus::InProgress {
            if rec.holder != self.settings.holder
                && self.ports.liveness.alive(&rec.holder) == Some(false)
            {
                return Ok(Some(rec));
            }
            if !told {
                self.note(&format!(
                    "the rollback of {} is already in progress ({}); waiting for its outcome",
                    rec.deployment_id, rec.holder
                ));
                told = true;
            }
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
        Ok(None)
    }

    /// Takes an environment's lease under `run`, waiting while another holds it (a
    /// holder known to be dead is taken over).
    fn wait_for_lease(&self, environment: &str, run: RunId) -> PortResult<()> {
        self.wait_for_lease_within(environment, run, None)
    }

    fn wait_for_lease_within(
        &self,
        environment: &str,
        run: RunId,
        limit: Option<Duration>,
    ) -> PortResult<()> {
        let clock = self.ports.clock;
        let start = clock.now();
        let mut told = false;
        loop {
            let now = clock.now();
            let want = Lease {
                environment: environment.to_string(),
                run,
                holder: self.settings.holder.clone(),
                expires_at: now.plus(self.settings.lease_ttl * 20),
            };
            match self.acquire_or_take_over(&want, now)? {
                Ok(()) => return Ok(()),
                Err(holder) => {
                    if limit.is_some_and(|l| now.since(start) >= l) {
                        return Err(PortError::conflict(format!(
                            "environment {environment} stayed held by run {} ({})",
                            holder.run, holder.holder
                        )));
                    }
                    if !told {
                        self.note(&format!(
                            "waiting for environment {environment}: run {} ({}) is deploying there",
                            holder.run, holder.holder
                        ));
                        told = true;
                    }
                    clock.sleep(self.settings.poll);
                }
            }
        }
    }

    /// Takes a lease, or takes it over from a holder known to be gone.
    fn acquire_or_take_over(&self, want: &Lease, now: Timestamp) -> PortResult<Result<(), Lease>> {
        match self.ports.store.acquire_lease(want, now)? {
            Ok(()) => Ok(Ok(())),
            Err(held) if self.ports.liveness.alive(&held.holder) == Some(false) => {
                self.ports.observer.notice(&format!(
                    "taking over environment {} from {} (run {}), which is no longer running",
                    want.environment, held.holder, held.run
                ));
                self.ports.store.take_over_lease(want, &held)
            }
            Err(held) => Ok(Err(held)),
        }
    }

    /// Seed §6.2: transient failures are retried with exponential backoff before they
    /// count.
    fn retry_plain<T>(&self, mut f: impl FnMut() -> PortResult<T>) -> PortResult<T> {
        let mut attempt = 1;
        loop {
            match f() {
                Err(e) if e.kind == PortErrorKind::Transient => {
                    attempt += 1;
                    match self.settings.retry.delay_before(attempt) {
                        Some(d) => {
                            self.note(&format!(
                                "{}; retrying in {} (attempt {attempt})",
                                e.message,
                                ferry_core::time::human(d)
                            ));
                            self.ports.clock.sleep(d);
                        }
                        None => return Err(e),
                    }
                }
                other => return other,
            }
        }
    }

    /// Records changes of a rollback against the run that made the deployment.
    fn record(&self, run: RunId, changes: Vec<Change>) -> PortResult<()> {
        self.ports.store.record_rollback(run, &changes)?;
        self.ports.observer.rolled(&changes);
        Ok(())
    }

    fn note(&self, message: &str) {
        self.ports.observer.notice(message);
    }
}

/// What a full level restore did to one environment.
enum Restored {
    /// Put back and validated.
    Done,
    /// Left alone: this incident holds the environment until a person resolves it.
    Held(i64),
}
