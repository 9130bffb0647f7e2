//! A fake deployer per environment, all writing into one shared [`Timeline`]: what was
//! deployed or rolled back where, by which run, from when to when (fake clock and global
//! ticks), and whether two calls into one environment were ever in flight at once.

use crate::clock::{FakeClock, Ticks};
use ferry_core::{RunId, Timestamp};
use ferry_engine::ports::{Clock, DeployRequest, Deployer, PortError, PortResult};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How one call of `deploy` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployResult {
    Succeeded,
    Transient(String),
    Permanent(String),
}

/// Which method of the [`Deployer`] a timeline entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// [`Deployer::deploy`]: a run putting its version into an environment.
    Deploy,
    /// [`Deployer::rollback`]: an earlier release put back.
    Rollback,
}

/// One call of [`Deployer::deploy`] or [`Deployer::rollback`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployEntry {
    pub kind: CallKind,
    pub environment: String,
    pub version: String,
    /// From the request's `FERRY_RUN_ID`.
    pub run: Option<RunId>,
    pub start: Timestamp,
    pub end: Timestamp,
    pub start_tick: u64,
    pub end_tick: u64,
    pub result: DeployResult,
    /// What was running before the call.
    pub before: Option<String>,
    pub request: DeployRequestSummary,
}

/// What the deployer was told, besides the environment and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployRequestSummary {
    pub artifact_digest: String,
    pub artifact_location: String,
    pub env: BTreeMap<String, String>,
}

/// Two calls of `deploy` into one environment in flight at the same time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    pub environment: String,
    pub runs: Vec<Option<RunId>>,
    pub tick: u64,
}

/// The shared record of every deployer call of a simulation.
pub struct Timeline {
    ticks: Arc<Ticks>,
    entries: Mutex<Vec<DeployEntry>>,
    active: Mutex<BTreeMap<String, Vec<Option<RunId>>>>,
    overlaps: Mutex<Vec<Overlap>>,
}

impl Timeline {
    pub fn new(ticks: Arc<Ticks>) -> Self {
        Timeline {
            ticks,
            entries: Mutex::new(Vec::new()),
            active: Mutex::new(BTreeMap::new()),
            overlaps: Mutex::new(Vec::new()),
        }
    }

    /// Every deployer call, in the order they ended.
    pub fn entries(&self) -> Vec<DeployEntry> {
        lock(&self.entries).clone()
    }

    /// The calls that succeeded, in order.
    pub fn successes(&self) -> Vec<DeployEntry> {
        self.entries()
            .into_iter()
            .filter(|e| e.result == DeployResult::Succeeded)
            .collect()
    }

    /// The calls that carry one run's `FERRY_RUN_ID`, in order: its deploys, and the
    /// rollbacks that put its release back.
    pub fn of_run(&self, run: RunId) -> Vec<DeployEntry> {
        self.entries()
            .into_iter()
            .filter(|e| e.run == Some(run))
            .collect()
    }

    /// The `deploy` calls of one run, in order.
    pub fn deploys_of_run(&self, run: RunId) -> Vec<DeployEntry> {
        self.entries()
            .into_iter()
            .filter(|e| e.run == Some(run) && e.kind == CallKind::Deploy)
            .collect()
    }

    /// The `rollback` calls, in the order they ended.
    pub fn rollbacks(&self) -> Vec<DeployEntry> {
        self.entries()
            .into_iter()
            .filter(|e| e.kind == CallKind::Rollback)
            .collect()
    }

    /// The calls into one environment, in order.
    pub fn into_env(&self, environment: &str) -> Vec<DeployEntry> {
        self.entries()
            .into_iter()
            .filter(|e| e.environment == environment)
            .collect()
    }

    /// Calls that were in flight into the same environment at once.
    pub fn overlaps(&self) -> Vec<Overlap> {
        lock(&self.overlaps).clone()
    }

    fn enter(&self, environment: &str, run: Option<RunId>) -> u64 {
        let tick = self.ticks.next();
        let mut active = lock(&self.active);
        let now = active.entry(environment.to_string()).or_default();
        now.push(run);
        if now.len() > 1 {
            lock(&self.overlaps).push(Overlap {
                environment: environment.to_string(),
                runs: now.clone(),
                tick,
            });
        }
        tick
    }

    fn leave(&self, entry: DeployEntry) {
        let mut active = lock(&self.active);
        if let Some(now) = active.get_mut(&entry.environment)
            && let Some(i) = now.iter().position(|r| *r == entry.run)
        {
            now.remove(i);
        }
        lock(&self.entries).push(entry);
    }
}

struct State {
    current: Option<String>,
    deploy_time: Duration,
    permanent: Option<String>,
    transient: u32,
    rollback_permanent: Option<String>,
    rollback_transient: u32,
    misreport: Option<String>,
    fail_current: Option<PortError>,
    fail_health: Option<PortError>,
    health_checks: u32,
}

struct Inner {
    environment: String,
    clock: Arc<FakeClock>,
    timeline: Arc<Timeline>,
    state: Mutex<State>,
}

/// A [`Deployer`] for one environment. Cheap to clone: clones share the environment's
/// state. Deploying takes [`FakeDeployer::taking`] of fake time (1 s at first).
///
/// Faults of `deploy`: [`fail_permanently`](FakeDeployer::fail_permanently),
/// [`fail_transiently`](FakeDeployer::fail_transiently) (the next `n` calls). Faults of
/// `rollback`, separately:
/// [`fail_rollback_permanently`](FakeDeployer::fail_rollback_permanently),
/// [`fail_rollback_transiently`](FakeDeployer::fail_rollback_transiently). Of both:
/// [`misreport`](FakeDeployer::misreport) (`current_version` names another version than
/// the one deployed), [`fail_current_version`](FakeDeployer::fail_current_version),
/// [`fail_health`](FakeDeployer::fail_health) (the health check after a rollback).
#[derive(Clone)]
pub struct FakeDeployer {
    inner: Arc<Inner>,
}

impl FakeDeployer {
    pub fn new(environment: &str, clock: Arc<FakeClock>, timeline: Arc<Timeline>) -> Self {
        FakeDeployer {
            inner: Arc::new(Inner {
                environment: environment.to_string(),
                clock,
                timeline,
                state: Mutex::new(State {
                    current: None,
                    deploy_time: Duration::from_secs(1),
                    permanent: None,
                    transient: 0,
                    rollback_permanent: None,
                    rollback_transient: 0,
                    misreport: None,
                    fail_current: None,
                    fail_health: None,
                    health_checks: 0,
                }),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    /// The environment this deployer serves.
    pub fn environment(&self) -> &str {
        &self.inner.environment
    }

    /// Each call of `deploy` takes `d` of fake time, failed ones too.
    pub fn taking(&self, d: Duration) -> &Self {
        self.state().deploy_time = d;
        self
    }

    /// Every call of `deploy` fails with a permanent error from now on (`None` heals).
    /// Rollbacks are not affected.
    pub fn fail_permanently(&self, why: Option<&str>) -> &Self {
        self.state().permanent = why.map(str::to_string);
        self
    }

    /// The next `n` calls of `deploy` fail with a transient error (before any permanent
    /// failure). Rollbacks are not affected.
    pub fn fail_transiently(&self, n: u32) -> &Self {
        self.state().transient = n;
        self
    }

    /// Every call of `rollback` fails with a permanent error from now on (`None` heals);
    /// what runs stays as it was. Deployments are not affected.
    pub fn fail_rollback_permanently(&self, why: Option<&str>) -> &Self {
        self.state().rollback_permanent = why.map(str::to_string);
        self
    }

    /// The next `n` calls of `rollback` fail with a transient error (before any permanent
    /// rollback failure). Deployments are not affected.
    pub fn fail_rollback_transiently(&self, n: u32) -> &Self {
        self.state().rollback_transient = n;
        self
    }

    /// `healthy` fails with `error` from now on (`None` heals).
    pub fn fail_health(&self, error: Option<PortError>) -> &Self {
        self.state().fail_health = error;
        self
    }

    /// How many times `healthy` was asked.
    pub fn health_checks(&self) -> u32 {
        self.state().health_checks
    }

    /// `current_version` answers `version` from now on, whatever was deployed (`None`
    /// heals).
    pub fn misreport(&self, version: Option<&str>) -> &Self {
        self.state().misreport = version.map(str::to_string);
        self
    }

    /// `current_version` fails with `error` from now on (`None` heals).
    pub fn fail_current_version(&self, error: Option<PortError>) -> &Self {
        self.state().fail_current = error;
        self
    }

    /// Sets what is running, as if deployed earlier.
    pub fn set_current(&self, version: Option<&str>) {
        self.state().current = version.map(str::to_string);
    }

    /// What is really running.
    pub fn running(&self) -> Option<String> {
        self.state().current.clone()
    }
}

impl FakeDeployer {
    /// One call of `deploy` or `rollback`: takes the deploy time, consults the faults of
    /// that kind of call, and records itself on the timeline.
    fn call(&self, req: &DeployRequest, kind: CallKind) -> PortResult<()> {
        let inner = &self.inner;
        let run = req
            .env
            .get("FERRY_RUN_ID")
            .and_then(|s| s.parse::<i64>().ok())
            .map(RunId);
        let start_tick = inner.timeline.enter(&inner.environment, run);
        let start = inner.clock.now();
        let (took, before) = {
            let s = self.state();
            (s.deploy_time, s.current.clone())
        };
        if !took.is_zero() {
            inner.clock.sleep(took);
        }
        let result = {
            let mut s = self.state();
            let s = &mut *s;
            let (transient, permanent, what) = match kind {
                CallKind::Deploy => (&mut s.transient, &s.permanent, "deployment"),
                CallKind::Rollback => {
                    (&mut s.rollback_transient, &s.rollback_permanent, "rollback")
                }
            };
            if *transient > 0 {
                *transient -= 1;
                DeployResult::Transient(format!(
                    "{}: {what} target is busy (injected transient fault)",
                    inner.environment
                ))
            } else if let Some(why) = permanent {
                DeployResult::Permanent(format!("{}: {why}", inner.environment))
            } else {
                s.current = Some(req.version.clone());
                DeployResult::Succeeded
            }
        };
        let end_tick = inner.timeline.ticks.next();
        inner.timeline.leave(DeployEntry {
            kind,
            environment: inner.environment.clone(),
            version: req.version.clone(),
            run,
            start,
            end: inner.clock.now(),
            start_tick,
            end_tick,
            result: result.clone(),
            before,
            request: DeployRequestSummary {
                artifact_digest: req.artifact.digest.clone(),
                artifact_location: req.artifact.location.clone(),
                env: req.env.clone(),
            },
        });
        match result {
            DeployResult::Succeeded => Ok(()),
            DeployResult::Transient(m) => Err(PortError::transient(m)),
            DeployResult::Permanent(m) => Err(PortError::permanent(m)),
        }
    }
}

impl Deployer for FakeDeployer {
    fn deploy(&self, req: &DeployRequest) -> PortResult<()> {
        self.call(req, CallKind::Deploy)
    }

    /// A rollback puts the target version back the same way a deployment does (and is
    /// recorded on the same timeline, so overlaps are caught for both), with its own
    /// faults.
    fn rollback(&self, req: &DeployRequest) -> PortResult<()> {
        self.call(req, CallKind::Rollback)
    }

    fn current_version(&self) -> PortResult<Option<String>> {
        let s = self.state();
        if let Some(e) = &s.fail_current {
            return Err(e.clone());
        }
        Ok(s.misreport.clone().or_else(|| s.current.clone()))
    }

    fn healthy(&self, _within: Duration) -> PortResult<()> {
        let mut s = self.state();
        s.health_checks += 1;
        match &s.fail_health {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

/// The simulated [`DeployerFactory`](ferry_engine::ports::DeployerFactory): one shared
/// [`FakeDeployer`] per environment, whatever `deploy:` section is asked for.
#[derive(Clone, Default)]
pub struct FakeDeployers(pub std::collections::BTreeMap<String, FakeDeployer>);

impl ferry_engine::ports::DeployerFactory for FakeDeployers {
    fn deployer(
        &self,
        environment: &str,
        _deploy: &ferry_config::Deploy,
    ) -> PortResult<Box<dyn Deployer + '_>> {
        match self.0.get(environment) {
            Some(d) => Ok(Box::new(d.clone())),
            None => Err(PortError::permanent(format!(
                "no deployer for environment `{environment}`"
            ))),
        }
    }
}
