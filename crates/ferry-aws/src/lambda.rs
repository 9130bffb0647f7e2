//! The rollback Lambda's handler (seed §5.1): an EventBridge alarm event in, the same
//! rollback orchestrator as the local runtime (`ferry_engine::rollback::Orchestrator`)
//! run on the AWS adapters — the [`DynamoLedger`], [`S3Deployer`]s and
//! [`CloudFormationDeployer`]s (from each environment's `deploy:` section), CloudWatch
//! alarm states, SNS for every event the rollback records.
//!
//! Configuration (the Lambda's environment, which the monitoring stack of
//! `ferry synth aws` sets; the names are `ferry_synth::lambda_env`'s): `FERRY_CONFIG`
//! (the `ferry.yml` bundled with the function, default `ferry.yml`),
//! `FERRY_DEPLOYMENTS_TABLE` (the deployments table), `FERRY_ROLLBACKS_TOPIC` (optional:
//! the SNS topic of rollback events),
//! `FERRY_PIPELINE` (optional: the pipeline the stack was synthesized for; a bundled
//! file of another pipeline is refused). `FERRY_DEPLOY_BUCKET` is optional and unused
//! (stacks synthesized earlier set it).
//!
//! Only `s3:` and `cloudformation:` environments are rolled back here. A `release:` or
//! `command:` environment deploys on the machine that runs `ferry step` (CodeBuild):
//! the Lambda cannot reach it, so for those it records the rollback `not_performed`
//! with the reason (`ferry rollback ENV` on that machine), logs it as an error and
//! publishes a `rollback_failed` event to SNS; nothing is redeployed.
//!
//! Failures: an event of an unexpected shape is logged with its id and dropped (the
//! handler succeeds, so neither EventBridge nor Lambda retries it); a failure while
//! handling a good event (DynamoDB throttled past its attempts, an endpoint that cannot
//! be reached, a missing table) is an error, so Lambda's asynchronous invocation retries
//! it (twice) and then sends it to the function's dead-letter queue.

use crate::Aws;
use crate::alarm_event::{Action, Route, route, routes};
use crate::cloudformation::CloudFormationDeployer;
use crate::cloudwatch::CloudWatch;
use crate::ledger::DynamoLedger;
use crate::s3::S3Deployer;
use crate::sns::SnsNotifier;
use ferry_config::Pipeline;
use ferry_core::alarm::{AlarmState, Datapoint};
use ferry_core::notify::Attempt;
use ferry_core::rollback::{RollbackRecord, Trigger};
use ferry_core::{Artifact, Change, Commit, DeploymentStatus, RunId, Timestamp};
use ferry_engine::driver::{Layout, Settings};
use ferry_engine::ports::*;
use ferry_engine::rollback::{Orchestrator, RollbackPorts};
use ferry_synth::lambda_env;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the Lambda needs to know, read from its environment.
#[derive(Debug, Clone)]
pub struct LambdaConfig {
    pub config: PathBuf,
    pub table: String,
    /// `FERRY_DEPLOY_BUCKET`, when set: no longer used (only `s3:` and
    /// `cloudformation:` environments are rolled back, each to its own target).
    pub bucket: Option<String>,
    pub topic_arn: Option<String>,
    /// The `pipeline:` name the stack was synthesized for, when set.
    pub pipeline: Option<String>,
    /// Scratch space (the Lambda's `/tmp`).
    pub work: PathBuf,
}

impl LambdaConfig {
    /// From the Lambda's environment (`ferry_synth::lambda_env`).
    pub fn from_env() -> PortResult<LambdaConfig> {
        let need = |k: &str| {
            std::env::var(k).map_err(|_| {
                PortError::unavailable(format!(
                    "{k} is not set: the rollback Lambda needs {} (the deployments table); the monitoring stack of `ferry synth aws` sets it",
                    lambda_env::TABLE,
                ))
            })
        };
        let optional = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Ok(LambdaConfig {
            config: PathBuf::from(
                optional(lambda_env::CONFIG).unwrap_or_else(|| lambda_env::CONFIG_DEFAULT.into()),
            ),
            table: need(lambda_env::TABLE)?,
            bucket: optional(lambda_env::DEPLOY_BUCKET),
            topic_arn: optional(lambda_env::ROLLBACKS_TOPIC),
            pipeline: optional(lambda_env::PIPELINE),
            work: std::env::temp_dir().join("ferry-lambda"),
        })
    }
}

/// What one event led to.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub action: Action,
    /// The rollback performed (or found already performed), if any.
    pub rollback: Option<RollbackRecord>,
}

impl Outcome {
    /// The handler's answer, as JSON.
    pub fn to_json(&self) -> Value {
        let (what, id, detail) = match &self.action {
            Action::RollBack {
                event_id,
                environment,
                alarm,
                ..
            } => ("rollback", event_id, format!("{alarm} in {environment}")),
            Action::Nothing { event_id, why } => ("nothing", event_id, why.clone()),
            Action::Drop { event_id, why } => ("dropped", event_id, why.clone()),
        };
        serde_json::json!({
            "action": what,
            "eventId": id,
            "detail": detail,
            "rollback": self.rollback,
        })
    }
}

/// One invocation of the handler: who it is, and when the Lambda service ends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The Lambda request id (unique per invocation; a retry gets a new one).
    pub request_id: String,
    /// When the Lambda service stops this invocation (its `deadline`), if known.
    pub deadline: Option<Timestamp>,
}

impl Invocation {
    /// A run outside the Lambda service (`ferry-lambda invoke`): an id of its own, no
    /// deadline.
    pub fn local() -> Invocation {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Invocation {
            request_id: format!("local-{}-{nanos}", std::process::id()),
            deadline: None,
        }
    }

    /// The name leases and rollback records carry: `lambda:REQUEST_ID`, with the
    /// deadline when there is one (`…/until=MS`), so that the retry of an invocation the
    /// Lambda service stopped mid-rollback (its 15-minute limit, a crash) takes over
    /// what it left instead of waiting for it.
    pub fn holder(&self) -> String {
        let name = format!("lambda:{}", self.request_id);
        match self.deadline {
            Some(d) => holder_until(&name, d),
            None => name,
        }
    }

    /// The run id the environment's lease is held under while this invocation rolls
    /// back: negative (no run of the pipeline has it) and derived from the request id.
    /// Not the process id: Lambda sandboxes run their bootstrap under the same few
    /// process ids, and a lease is "ours" by its run id.
    pub fn lease_run(&self) -> RunId {
        outside_run_for(&format!("lambda:{}", self.request_id))
    }
}

/// The handler: built once per cold start, then one call per event.
pub struct Handler {
    aws: Aws,
    pipeline: Pipeline,
    ledger: DynamoLedger,
    notifier: Option<SnsNotifier>,
    work: PathBuf,
    cloudwatch: CloudWatch,
    routes: Vec<Route>,
}

/// The wall clock.
struct SystemClock;
impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Timestamp(ms)
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// The Lambda has no repository: a rollback redeploys the kept S3 release, and the
/// orchestrator runs in its scratch folder when a commit cannot be checked out.
struct NoRepository;
impl Source for NoRepository {
    fn resolve(&self, rev: &str) -> PortResult<Commit> {
        Err(PortError::not_found(format!(
            "the rollback Lambda has no repository to resolve {rev} in"
        )))
    }
    fn checkout(&self, sha: &str, _dest: &Path) -> PortResult<()> {
        Err(PortError::not_found(format!(
            "the rollback Lambda has no repository to check {sha} out of"
        )))
    }
}

/// Reads artifacts to verify their digest before a restore: `s3://bucket/key` or a
/// local file.
struct ArtifactDigests<'a> {
    aws: &'a Aws,
}
impl ArtifactStore for ArtifactDigests<'_> {
    fn package(&self, dir: &Path, _run: RunId) -> PortResult<Artifact> {
        Err(PortError::permanent(format!(
            "the rollback Lambda never builds artifacts (asked to package {}); builds run in CodeBuild",
            dir.display()
        )))
    }
    fn digest(&self, location: &str) -> PortResult<String> {
        let bytes = match location.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, key) = rest.split_once('/').ok_or_else(|| {
                    PortError::permanent(format!("{location} is not s3://BUCKET/KEY"))
                })?;
                let mut cfg = aws_sdk_s3::config::Builder::from(self.aws.config());
                if self.aws.config().endpoint_url().is_some() {
                    cfg = cfg.force_path_style(true);
                }
                let client = aws_sdk_s3::Client::from_conf(cfg.build());
                let out = self
                    .aws
                    .block_on(client.get_object().bucket(bucket).key(key).send())
                    .map_err(|e| self.aws.error("S3", "GetObject", &e))?;
                self.aws
                    .block_on(out.body.collect())
                    .map_err(|e| self.aws.error("S3", "GetObject", &e))?
                    .into_bytes()
                    .to_vec()
            }
            None => std::fs::read(location)
                .map_err(|e| PortError::not_found(format!("cannot read {location}: {e}")))?,
        };
        Ok(format!("sha256:{}", hex::encode(Sha256::digest(&bytes))))
    }
}

/// Alarms are CloudWatch's: an alarm in ALARM is a breaching datapoint.
struct CloudWatchProbe<'a> {
    cloudwatch: &'a CloudWatch,
}
impl AlarmProbe for CloudWatchProbe<'_> {
    fn sample(&self, alarm: &ferry_config::Alarm) -> (Datapoint, String) {
        match self
            .cloudwatch
            .alarms(std::slice::from_ref(&alarm.name), None)
        {
            Ok(list) => match list.into_iter().find(|a| a.name == alarm.name) {
                Some(a) if a.state == AlarmState::Alarm => (Datapoint::Breaching, a.reason),
                Some(a) if a.state == AlarmState::Ok => (Datapoint::NotBreaching, a.reason),
                Some(a) => (Datapoint::Missing, a.reason),
                None => (Datapoint::Missing, "no such CloudWatch alarm".into()),
            },
            Err(e) => (Datapoint::Missing, e.message),
        }
    }
}

/// `s3:` environments deploy to their own bucket and prefix, `cloudformation:` ones to
/// their stack. The others (`release`, `command`) deploy on a machine the Lambda cannot
/// reach: no deployer (an error naming the environment, should a full-level rollback
/// reach one).
struct AwsDeployers<'a> {
    aws: &'a Aws,
}
impl DeployerFactory for AwsDeployers<'_> {
    fn deployer(
        &self,
        environment: &str,
        deploy: &ferry_config::Deploy,
    ) -> PortResult<Box<dyn Deployer + '_>> {
        Ok(match deploy {
            ferry_config::Deploy::S3(s) => Box::new(S3Deployer::new(
                self.aws,
                &s.bucket,
                &s.prefix_for(environment),
            )),
            ferry_config::Deploy::CloudFormation(c) => {
                Box::new(CloudFormationDeployer::new(self.aws, environment, c))
            }
            ferry_config::Deploy::Release(_) | ferry_config::Deploy::Command(_) => {
                return Err(PortError::permanent(machine_bound(environment, deploy)));
            }
        })
    }
}

/// Logs notices as JSON lines (CloudWatch Logs) and publishes every recorded event to
/// SNS.
struct LambdaObserver<'a> {
    notifier: Option<&'a SnsNotifier>,
}
impl Observer for LambdaObserver<'_> {
    fn changed(&self, _: &ferry_core::run::RunView, _: &[Change]) {}
    fn notice(&self, message: &str) {
        eprintln!(
            "{}",
            serde_json::json!({"level": "info", "message": message})
        );
    }
    fn rolled(&self, changes: &[Change]) {
        let Some(n) = self.notifier else { return };
        for c in changes {
            if let Change::Event(e) = c {
                match n.deliver(e.at.0, e) {
                    Attempt::Delivered(_) => {}
                    Attempt::Transient(why) | Attempt::Permanent(why) => eprintln!(
                        "{}",
                        serde_json::json!({"level": "warn", "message": format!("SNS: {why}")})
                    ),
                }
            }
        }
    }
}

impl Handler {
    /// Reads the pipeline file and connects the adapters.
    pub fn new(aws: &Aws, cfg: &LambdaConfig) -> PortResult<Handler> {
        let text = std::fs::read_to_string(&cfg.config).map_err(|e| {
            PortError::unavailable(format!(
                "cannot read the pipeline file {} ({}): {e}",
                cfg.config.display(),
                lambda_env::CONFIG
            ))
        })?;
        let pipeline =
            ferry_config::parse(&text, &cfg.config.display().to_string()).map_err(|d| {
                let lines: Vec<String> = d.iter().map(ToString::to_string).collect();
                PortError::unavailable(format!(
                    "{} is not a valid pipeline file: {}",
                    cfg.config.display(),
                    lines.join("; ")
                ))
            })?;
        if let Some(want) = &cfg.pipeline
            && &pipeline.name != want
        {
            return Err(PortError::unavailable(format!(
                "{} is pipeline `{}`, but the stack was synthesized for `{want}` ({}): its alarm rules would not match this file's alarms; bundle the stack's own ferry.yml",
                cfg.config.display(),
                pipeline.name,
                lambda_env::PIPELINE
            )));
        }
        Ok(Handler {
            routes: routes(&pipeline),
            aws: aws.clone(),
            pipeline,
            ledger: DynamoLedger::new(aws, &cfg.table),
            notifier: cfg
                .topic_arn
                .as_ref()
                .map(|t| SnsNotifier::new(aws, "rollbacks", t, Vec::new())),
            work: cfg.work.clone(),
            cloudwatch: CloudWatch::new(aws),
        })
    }

    /// Handles one event. An event of an unexpected shape is logged with its id and
    /// dropped (`Ok`); a failure while handling a good event is an error, so the
    /// Lambda's retries and then its dead-letter queue receive the event.
    pub fn handle(&self, event: &Value) -> PortResult<Outcome> {
        self.handle_invocation(event, &Invocation::local())
    }

    /// [`Handler::handle`] as one invocation of the Lambda service.
    pub fn handle_invocation(&self, event: &Value, call: &Invocation) -> PortResult<Outcome> {
        let action = route(event, &self.routes);
        let (environment, alarm, reason, at_ms) = match &action {
            Action::RollBack {
                environment,
                alarm,
                reason,
                at_ms,
                ..
            } => (environment.clone(), alarm.clone(), reason.clone(), *at_ms),
            Action::Drop { event_id, why } => {
                eprintln!(
                    "{}",
                    serde_json::json!({"level": "warn", "eventId": event_id, "message": format!("dropped: {why}")})
                );
                return Ok(Outcome {
                    action,
                    rollback: None,
                });
            }
            Action::Nothing { .. } => {
                return Ok(Outcome {
                    action,
                    rollback: None,
                });
            }
        };
        // The same event again (EventBridge delivers at least once; Lambda retries an
        // invocation that failed late) or another process's copy of it that lost the
        // race: a rollback begun since the alarm changed state has handled it. Its
        // deployment is no longer current, so without this the restored one would be
        // rolled back too.
        let clock = SystemClock;
        let mut abandoned = None;
        if let Some((d, rec)) = self.handled_by(&environment, at_ms)? {
            // Unless the invocation that began it stopped (its deadline passed) after
            // recording the outcome but before closing the record: the orchestrator
            // closes it (`Some(abandoned)` below), redeploying nothing.
            let stopped = rec.status == ferry_core::rollback::RollbackStatus::InProgress
                && alive_by_deadline(&rec.holder, clock.now()) == Some(false);
            if !stopped {
                return Ok(Outcome {
                    action,
                    rollback: Some(rec),
                });
            }
            abandoned = Some(d);
        }
        let current = match abandoned {
            Some(d) => Some(d),
            None => self.ledger.current_deployment(&environment)?,
        };
        let Some(bad) = current else {
            return Ok(Outcome {
                action: Action::Nothing {
                    event_id: event_id(&action),
                    why: format!("{environment} has no deployment to roll back"),
                },
                rollback: None,
            });
        };
        if bad.start_time > at_ms {
            return Ok(Outcome {
                action: Action::Nothing {
                    event_id: event_id(&action),
                    why: format!(
                        "alarm {alarm} changed state before {} of {environment} was deployed: it is not about it",
                        bad.version
                    ),
                },
                rollback: None,
            });
        }
        let artifacts = ArtifactDigests { aws: &self.aws };
        let probe = CloudWatchProbe {
            cloudwatch: &self.cloudwatch,
        };
        if let Some(env) = self.pipeline.environment(&environment)
            && matches!(
                env.deploy,
                ferry_config::Deploy::Release(_) | ferry_config::Deploy::Command(_)
            )
        {
            let why = machine_bound(&environment, &env.deploy);
            let rec = self.not_performed(&bad, &alarm, &reason, &why, call)?;
            return Ok(Outcome {
                action,
                rollback: Some(rec),
            });
        }
        let deployers = AwsDeployers { aws: &self.aws };
        let observer = LambdaObserver {
            notifier: self.notifier.as_ref(),
        };
        let settings = Settings {
            holder: call.holder(),
            outside_run: call.lease_run(),
            ..Settings::default()
        };
        // An invocation is known to be gone once its deadline has passed: a lease or
        // rollback left by one the Lambda service stopped is taken over.
        let liveness = Deadlines { clock: &clock };
        let orchestrator = Orchestrator {
            pipeline: &self.pipeline,
            ports: RollbackPorts {
                store: &self.ledger,
                clock: &clock,
                source: &NoRepository,
                artifacts: &artifacts,
                probe: &probe,
                observer: &observer,
                deployers: &deployers,
                liveness: &liveness,
            },
            layout: Layout {
                project: self.work.clone(),
                work: self.work.join("work"),
                logs: self.work.join("logs"),
            },
            settings,
        };
        let holder = orchestrator.settings.holder.clone();
        let began = clock.now();
        let rec = match orchestrator.roll_back(
            &bad,
            &format!("alarm {alarm}: {reason}"),
            Trigger::Alarm { name: alarm },
            None,
            None,
        ) {
            Ok(rec) => rec,
            Err(e) => {
                self.hand_over(&bad, &holder, call, &e);
                return Err(e);
            }
        };
        // A rollback this invocation performed (not another's it found) is counted for
        // the stack's rollback alarm (a metric filter on the Lambda's log group).
        if rec.holder == holder && rec.started_at >= began && rec.level.is_some() {
            eprintln!(
                "{}",
                serde_json::json!({"metric": lambda_env::ROLLBACK_METRIC, "value": 1, "environment": rec.environment})
            );
        }
        Ok(Outcome {
            action,
            rollback: Some(rec),
        })
    }
}

impl Handler {
    /// Records the rollback of `bad` as `not_performed` with `why` (unless a rollback
    /// of it is already recorded: that record is returned and nothing is repeated),
    /// logs `why` as an error and records and publishes a `rollback_failed` event. A
    /// person may still roll back with `ferry rollback` (a manual rollback retries a
    /// `not_performed` one).
    fn not_performed(
        &self,
        bad: &ferry_core::DeploymentRecord,
        alarm: &str,
        reason: &str,
        why: &str,
        call: &Invocation,
    ) -> PortResult<RollbackRecord> {
        let now = SystemClock.now();
        let mut rec = RollbackRecord::start(
            bad,
            &format!("alarm {alarm}: {reason}"),
            Trigger::Alarm {
                name: alarm.to_string(),
            },
            &call.holder(),
            now,
        );
        rec.status = ferry_core::rollback::RollbackStatus::NotPerformed;
        rec.detail.push(why.to_string());
        rec.ended_at = Some(now);
        if let Err(existing) = self.ledger.claim_rollback(&rec)? {
            return Ok(existing);
        }
        eprintln!(
            "{}",
            serde_json::json!({"level": "error", "environment": bad.environment, "message": why})
        );
        let event = ferry_core::Event {
            at: now,
            kind: ferry_core::EventKind::RollbackFailed,
            run: Some(bad.run_id),
            environment: Some(bad.environment.clone()),
            message: format!(
                "{} was not rolled back by the rollback Lambda: {why}",
                bad.environment
            ),
            data: serde_json::json!({
                "event": "rollback_failed",
                "status": "not_performed",
                "environment": bad.environment,
                "version": bad.version,
                "deploymentId": bad.deployment_id,
                "alarm": alarm,
                "reason": why,
                "timestamp": ferry_core::events::iso8601(now),
            }),
        };
        let changes = [Change::Event(event)];
        self.ledger.record_rollback(bad.run_id, &changes)?;
        LambdaObserver {
            notifier: self.notifier.as_ref(),
        }
        .rolled(&changes);
        Ok(rec)
    }

    /// The rollback of one of `environment`'s recent deployments that began at or after
    /// `at_ms`, if any, with that deployment.
    fn handled_by(
        &self,
        environment: &str,
        at_ms: i64,
    ) -> PortResult<Option<(ferry_core::DeploymentRecord, RollbackRecord)>> {
        for d in self.ledger.deployments(Some(environment), 20)? {
            if d.status != DeploymentStatus::RolledBack {
                continue;
            }
            if let Some(rec) = self.ledger.rollback(&d.deployment_id)?
                && rec.started_at.0 >= at_ms
            {
                return Ok(Some((d, rec)));
            }
        }
        Ok(None)
    }

    /// After this invocation failed (it returns the error, so Lambda retries the
    /// event): a rollback claim it leaves in progress is marked as held by an invocation
    /// already past its deadline, so the retry takes it over at once instead of waiting
    /// for this invocation's deadline.
    fn hand_over(
        &self,
        bad: &ferry_core::DeploymentRecord,
        holder: &str,
        call: &Invocation,
        e: &PortError,
    ) {
        let Ok(Some(mut claim)) = self.ledger.rollback(&bad.deployment_id) else {
            return;
        };
        if claim.holder != holder
            || claim.status != ferry_core::rollback::RollbackStatus::InProgress
        {
            return;
        }
        let now = SystemClock.now();
        let past =
            Timestamp(now.0 - i64::try_from(DEADLINE_GRACE.as_millis()).unwrap_or(0) - 1_000);
        claim.holder = holder_until(&format!("lambda:{}", call.request_id), past);
        claim.detail.push(format!(
            "invocation {} stopped on an error, left to the retry: {}",
            call.request_id, e.message
        ));
        let _ = self.ledger.update_rollback(&claim);
    }
}

/// Why the Lambda does not roll back an environment that deploys on a machine.
fn machine_bound(environment: &str, deploy: &ferry_config::Deploy) -> String {
    let kind = match deploy {
        ferry_config::Deploy::Command(_) => "command",
        _ => "release",
    };
    format!(
        "environment {environment} deploys with `{kind}:`, which runs on a machine; the Lambda rolls back `s3:` and `cloudformation:` environments — use `ferry rollback {environment}` on that machine"
    )
}

fn event_id(a: &Action) -> String {
    match a {
        Action::RollBack { event_id, .. }
        | Action::Nothing { event_id, .. }
        | Action::Drop { event_id, .. } => event_id.clone(),
    }
}
