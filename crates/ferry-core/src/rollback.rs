//! The rollback orchestrator's decisions (seed §3.4): which version each environment goes
//! back to, at which level, and how the outcome is recorded. The engine performs the
//! redeploys and validations; everything it decides with lives here, pure.
//!
//! Levels: `stage` puts the failing environment back to its last known good release set;
//! `full` (when stage level fails) puts every environment, production first, back to the
//! newest version that succeeded in all of them. Rolling back the same deployment twice
//! returns the first outcome (seed Property 2): the store keeps one [`RollbackRecord`]
//! per deployment, claimed before anything is redeployed.

use crate::changes::Change;
use crate::deployment::DeploymentRecord;
use crate::events::{Event, EventKind, iso8601};
use crate::model::{DeploymentStatus, RollbackLevel, short_sha};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// What a deployment put into its environment, restored as a whole by a rollback: the
/// artifact, the pipeline file that deployed it, and the infrastructure templates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseSet {
    pub version: String,
    pub artifact_digest: String,
    pub artifact_location: String,
    /// `sha256:<hex>` of the `ferry.yml` that deployed it (its text is in the store).
    pub config_digest: Option<String>,
    /// Template path → `sha256:<hex>`.
    pub templates: std::collections::BTreeMap<String, String>,
}

impl ReleaseSet {
    pub fn of(d: &DeploymentRecord) -> ReleaseSet {
        ReleaseSet {
            version: d.version.clone(),
            artifact_digest: d.artifact_digest.clone(),
            artifact_location: d.artifact_location.clone(),
            config_digest: d.config_digest.clone(),
            templates: d.template_digests.clone(),
        }
    }
}

/// Why a rollback started (seed Property 4's triggers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "trigger", rename_all = "snake_case")]
pub enum Trigger {
    DeployFailed,
    TestsFailed,
    MonitorFailed,
    Alarm {
        name: String,
    },
    /// `ferry rollback ENV` by a person; `accept_data_loss`: they passed
    /// `--accept-data-loss`, so a rollback-unsafe deployment may be taken back.
    Manual {
        by: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        accept_data_loss: bool,
    },
}

impl Trigger {
    pub fn label(&self) -> String {
        match self {
            Trigger::DeployFailed => "deploy failed".into(),
            Trigger::TestsFailed => "tests failed".into(),
            Trigger::MonitorFailed => "monitor window failed".into(),
            Trigger::Alarm { name } => format!("alarm {name}"),
            Trigger::Manual { by, .. } => format!("manual, by {by}"),
        }
    }
}

/// One environment going back to one release set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub environment: String,
    /// The deployment whose release set is restored.
    pub deployment_id: String,
    pub set: ReleaseSet,
    /// The restored deployment's commit and run, so a redeploy sees the variables its
    /// own deployment saw.
    pub commit_message: String,
    pub commit_author: String,
    pub run: crate::model::RunId,
}

/// The newest succeeded deployment of `bad`'s environment that started before it and
/// runs another version: where stage level rollback goes.
pub fn stage_target(bad: &DeploymentRecord, history: &[DeploymentRecord]) -> Option<Target> {
    history
        .iter()
        .filter(|d| {
            d.environment == bad.environment
                && d.status == DeploymentStatus::Succeeded
                && d.version != bad.version
                && d.deployment_id != bad.deployment_id
                && d.start_time <= bad.start_time
        })
        .max_by_key(|d| (d.start_time, d.deployment_id.clone()))
        .map(target_of)
}

/// A manual rollback's target: `version` must once have succeeded in `environment`
/// (the newest such deployment is restored). The error lists the valid versions.
pub fn manual_target(
    environment: &str,
    version: &str,
    history: &[DeploymentRecord],
) -> Result<Target, String> {
    let good: Vec<&DeploymentRecord> = history
        .iter()
        .filter(|d| d.environment == environment && d.status == DeploymentStatus::Succeeded)
        .collect();
    let chosen = good
        .iter()
        .filter(|d| d.version == version || (version.len() >= 7 && d.version.starts_with(version)))
        .max_by_key(|d| (d.start_time, d.deployment_id.clone()));
    match chosen {
        Some(d) => Ok(target_of(d)),
        None => {
            let mut valid: Vec<String> = Vec::new();
            for d in good.iter().rev() {
                let v = short_sha(&d.version).to_string();
                if !valid.contains(&v) {
                    valid.push(v);
                }
            }
            Err(if valid.is_empty() {
                format!(
                    "no version ever succeeded in {environment}, so there is nothing to roll back to"
                )
            } else {
                format!(
                    "version `{version}` never succeeded in {environment}; versions that did: {}",
                    valid.join(", ")
                )
            })
        }
    }
}

/// Full rollback: the newest version other than `bad` that succeeded in every
/// environment of `order` (promotion order), and the deployment to restore in each,
/// production first.
pub fn full_targets(
    order: &[String],
    history: &[DeploymentRecord],
    bad: &str,
) -> Result<Vec<Target>, String> {
    if order.is_empty() {
        return Err("the pipeline has no environments".into());
    }
    let last = order.len() - 1;
    // Candidates: versions that succeeded in the last environment, newest first.
    let mut candidates: Vec<&DeploymentRecord> = history
        .iter()
        .filter(|d| {
            d.environment == order[last]
                && d.status == DeploymentStatus::Succeeded
                && d.version != bad
        })
        .collect();
    candidates.sort_by_key(|d| std::cmp::Reverse((d.start_time, d.deployment_id.clone())));
    for c in candidates {
        let mut targets = Vec::new();
        for env in order.iter().rev() {
            let found = history
                .iter()
                .filter(|d| {
                    d.environment == *env
                        && d.status == DeploymentStatus::Succeeded
                        && d.version == c.version
                })
                .max_by_key(|d| (d.start_time, d.deployment_id.clone()));
            match found {
                Some(d) => targets.push(target_of(d)),
                None => break,
            }
        }
        if targets.len() == order.len() {
            return Ok(targets);
        }
    }
    Err(format!(
        "no version other than the one rolled back succeeded in every environment ({}), so a full rollback has nowhere to go",
        order.join(", ")
    ))
}

fn target_of(d: &DeploymentRecord) -> Target {
    Target {
        environment: d.environment.clone(),
        deployment_id: d.deployment_id.clone(),
        set: ReleaseSet::of(d),
        commit_message: d.commit_message.clone(),
        commit_author: d.commit_author.clone(),
        run: d.run_id,
    }
}

macro_rules! rollback_statuses {
    ($($variant:ident => $text:literal),+ $(,)?) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum RollbackStatus { $($variant),+ }
        impl RollbackStatus {
            pub fn as_str(self) -> &'static str { match self { $(RollbackStatus::$variant => $text),+ } }
            pub fn parse(s: &str) -> Option<Self> { match s { $($text => Some(RollbackStatus::$variant),)+ _ => None } }
        }
        impl std::fmt::Display for RollbackStatus {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

rollback_statuses! {
    InProgress => "in_progress",
    Succeeded => "succeeded",
    Failed => "failed",
    NothingToDo => "nothing_to_do",
    // Refused: it would take back a rollback-unsafe deployment; a person decides.
    NotPerformed => "not_performed",
}

/// (`nothing_to_do`: the environment never had an earlier successful deployment;
/// `not_performed`: it would have taken back a rollback-unsafe deployment, see
/// [`unsafe_to_restore`].)
///
/// The one record of rolling back one deployment (the idempotency key is the
/// deployment id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackRecord {
    pub deployment_id: String,
    pub environment: String,
    pub from_version: String,
    pub to_version: Option<String>,
    pub level: Option<RollbackLevel>,
    pub status: RollbackStatus,
    pub reason: String,
    pub trigger: Trigger,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    /// Who is performing it (`host:pid`), while in progress.
    pub holder: String,
    /// What was tried and seen, for people (validation results per environment).
    pub detail: Vec<String>,
    pub incident: Option<i64>,
}

impl RollbackRecord {
    pub fn start(
        bad: &DeploymentRecord,
        reason: &str,
        trigger: Trigger,
        holder: &str,
        now: Timestamp,
    ) -> Self {
        RollbackRecord {
            deployment_id: bad.deployment_id.clone(),
            environment: bad.environment.clone(),
            from_version: bad.version.clone(),
            to_version: None,
            level: None,
            status: RollbackStatus::InProgress,
            reason: reason.to_string(),
            trigger,
            started_at: now,
            ended_at: None,
            holder: holder.to_string(),
            detail: Vec::new(),
            incident: None,
        }
    }
}

/// The changes and event that announce a rollback (seed §3.6.2 `rollback_initiated`).
pub fn initiated(
    rec: &RollbackRecord,
    bad: &DeploymentRecord,
    level: RollbackLevel,
    targets: &[Target],
    now: Timestamp,
) -> Vec<Change> {
    let target_version = targets.first().map(|t| t.set.version.clone());
    vec![Change::Event(Event {
        at: now,
        kind: EventKind::RollbackInitiated,
        run: Some(bad.run_id),
        environment: Some(bad.environment.clone()),
        message: format!(
            "rolling back {} in {} ({} level) to {}: {}",
            short_sha(&bad.version),
            targets
                .iter()
                .map(|t| t.environment.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            level,
            target_version.as_deref().map(short_sha).unwrap_or("-"),
            rec.reason
        ),
        data: json!({
            "event": "rollback_initiated",
            "environment": bad.environment,
            "currentVersion": bad.version,
            "targetVersion": target_version,
            "reason": rec.reason,
            "level": level,
            "environments": targets.iter().map(|t| t.environment.clone()).collect::<Vec<_>>(),
            "trigger": rec.trigger,
            "timestamp": iso8601(now),
        }),
    })]
}

/// The deployments a rollback to `target` takes back in its environment: the failing
/// one (`bad`), and every deployment that succeeded (or was in progress) after the
/// target's, so that the last known good deployment afterwards is the one restored.
/// Deployments that had already failed stay `failed`.
pub fn superseded_by_restore<'h>(
    target: &Target,
    history: &'h [DeploymentRecord],
    bad: &str,
) -> Vec<&'h DeploymentRecord> {
    let Some(t) = history
        .iter()
        .find(|d| d.deployment_id == target.deployment_id)
    else {
        return history.iter().filter(|d| d.deployment_id == bad).collect();
    };
    history
        .iter()
        .filter(|d| {
            d.environment == target.environment
                && d.deployment_id != t.deployment_id
                && (d.deployment_id == bad
                    || (matches!(
                        d.status,
                        DeploymentStatus::Succeeded | DeploymentStatus::InProgress
                    ) && (d.start_time, &d.deployment_id) > (t.start_time, &t.deployment_id)))
        })
        .collect()
}

/// The changes that record a successful rollback: every rolled back deployment is
/// `rolled_back` with reason, level and time; `rollback_succeeded`.
pub fn succeeded(
    rec: &RollbackRecord,
    bad: &DeploymentRecord,
    rolled_back: &[DeploymentRecord],
    level: RollbackLevel,
    to_version: &str,
    now: Timestamp,
) -> Vec<Change> {
    let mut out: Vec<Change> = rolled_back
        .iter()
        .map(|d| Change::DeploymentRolledBack {
            deployment_id: d.deployment_id.clone(),
            reason: rec.reason.clone(),
            level,
            at: now,
        })
        .collect();
    let took = crate::time::human(now.since(rec.started_at));
    out.push(Change::Event(Event {
        at: now,
        kind: EventKind::RollbackSucceeded,
        run: Some(bad.run_id),
        environment: Some(bad.environment.clone()),
        message: format!(
            "rolled back {} to {} ({} level) in {took}",
            bad.environment,
            short_sha(to_version),
            level
        ),
        data: json!({
            "event": "rollback_succeeded",
            "environment": bad.environment,
            "previousVersion": bad.version,
            "currentVersion": to_version,
            "level": level,
            "reason": rec.reason,
            "duration": took,
            "timestamp": iso8601(now),
        }),
    }));
    out
}

/// The changes that record a failed rollback at one level.
pub fn level_failed(
    bad: &DeploymentRecord,
    level: RollbackLevel,
    why: &str,
    now: Timestamp,
) -> Vec<Change> {
    vec![Change::Event(Event {
        at: now,
        kind: EventKind::RollbackFailed,
        run: Some(bad.run_id),
        environment: Some(bad.environment.clone()),
        message: format!(
            "{level} level rollback of {} failed: {why}",
            bad.environment
        ),
        data: json!({
            "event": "rollback_failed",
            "environment": bad.environment,
            "version": bad.version,
            "level": level,
            "reason": why,
            "timestamp": iso8601(now),
        }),
    })]
}

/// Escalation when both levels failed (seed §6.2): an incident, the environment held
/// for a person, a critical event.
pub fn escalate(
    rec: &RollbackRecord,
    bad: &DeploymentRecord,
    why: &str,
    now: Timestamp,
) -> Vec<Change> {
    vec![
        Change::IncidentOpened {
            environment: bad.environment.clone(),
            deployment_id: bad.deployment_id.clone(),
            reason: format!("automated rollback failed: {why}"),
            at: now,
        },
        Change::Event(Event {
            at: now,
            kind: EventKind::IncidentOpened,
            run: Some(bad.run_id),
            environment: Some(bad.environment.clone()),
            message: format!(
                "CRITICAL: automated rollback of {} failed; {} needs a person and takes no automatic deployment until `ferry resolve {}`",
                bad.environment, bad.environment, bad.environment
            ),
            data: json!({
                "event": "incident_opened",
                "severity": "critical",
                "title": "Automated rollback failed",
                "environment": bad.environment,
                "version": bad.version,
                "deploymentId": bad.deployment_id,
                "reason": why,
                "rollbackReason": rec.reason,
                "timestamp": iso8601(now),
            }),
        }),
    ]
}

/// How long the freeze set on a refused rollback-unsafe rollback lasts unless a person
/// lifts it (`ferry unfreeze ENV`): long enough to mean "until someone decides".
pub const UNSAFE_FREEZE: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 60 * 60);

/// A rollback-unsafe deployment a rollback would take back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnsafeDeployment {
    pub environment: String,
    pub deployment_id: String,
    pub version: String,
    /// Its `rollback_unsafe_reason`.
    pub reason: String,
}

impl std::fmt::Display for UnsafeDeployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} ({}): {}",
            self.environment,
            self.deployment_id,
            short_sha(&self.version),
            self.reason
        )
    }
}

/// The rollback-unsafe deployments (seed §13.1 question 3) that restoring `targets` would
/// take back — `bad` itself when it is in a target's environment, and every later
/// deployment a restore supersedes. Empty: the level is safe to perform.
pub fn unsafe_to_restore(
    bad: &DeploymentRecord,
    targets: &[Target],
    history: &[DeploymentRecord],
) -> Vec<UnsafeDeployment> {
    let mut out: Vec<UnsafeDeployment> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for t in targets {
        let mut taken = superseded_by_restore(t, history, &bad.deployment_id);
        // `bad` may not be in `history` yet (a caller's fresh record).
        if t.environment == bad.environment
            && !taken.iter().any(|d| d.deployment_id == bad.deployment_id)
        {
            taken.push(bad);
        }
        for d in taken {
            if d.rollback_unsafe && !seen.contains(&d.deployment_id.as_str()) {
                seen.push(&d.deployment_id);
                out.push(UnsafeDeployment {
                    environment: d.environment.clone(),
                    deployment_id: d.deployment_id.clone(),
                    version: d.version.clone(),
                    reason: d
                        .rollback_unsafe_reason
                        .clone()
                        .unwrap_or_else(|| "its infrastructure change is rollback-unsafe".into()),
                });
            }
        }
    }
    out
}

/// Whether a rollback that would take back the rollback-unsafe deployments `unsafe_found`
/// may go ahead: only when there are none, or a person accepted the data loss
/// (`ferry rollback ENV --accept-data-loss`). Automatic triggers never may.
pub fn may_restore(trigger: &Trigger, unsafe_found: &[UnsafeDeployment]) -> bool {
    unsafe_found.is_empty()
        || matches!(
            trigger,
            Trigger::Manual {
                accept_data_loss: true,
                ..
            }
        )
}

/// The reason recorded (rollback detail, freeze, incident) when a rollback is not
/// performed because it would take back rollback-unsafe deployments.
pub fn unsafe_reason(level: RollbackLevel, unsafe_found: &[UnsafeDeployment]) -> String {
    let found: Vec<String> = unsafe_found.iter().map(ToString::to_string).collect();
    format!(
        "{level} level rollback not performed: it would take back a rollback-unsafe deployment ({}); the data would be lost or the schema incompatible, so a person decides (`ferry rollback ENV --accept-data-loss`, or fix forward, then `ferry resolve ENV` and `ferry unfreeze ENV`)",
        found.join("; ")
    )
}

/// The freeze that stops new deployments of `environment` while a person decides about
/// a rollback-unsafe deployment (lifted by `ferry unfreeze`).
pub fn unsafe_freeze(environment: &str, reason: &str, now: Timestamp) -> crate::window::Freeze {
    crate::window::Freeze {
        id: 0,
        environment: environment.to_string(),
        from: now,
        until: now.plus(UNSAFE_FREEZE),
        reason: reason.to_string(),
        by: "ferry (rollback-unsafe)".to_string(),
        lifted_at: None,
        lifted_by: None,
    }
}

/// The changes of a rollback not performed because it is rollback-unsafe: an incident
/// holding `bad`'s environment for a person and its `incident_opened` event with the
/// reason (`rollbackUnsafe: true`).
pub fn not_performed(
    rec: &RollbackRecord,
    bad: &DeploymentRecord,
    level: RollbackLevel,
    unsafe_found: &[UnsafeDeployment],
    now: Timestamp,
) -> Vec<Change> {
    let why = unsafe_reason(level, unsafe_found);
    vec![
        Change::IncidentOpened {
            environment: bad.environment.clone(),
            deployment_id: bad.deployment_id.clone(),
            reason: why.clone(),
            at: now,
        },
        Change::Event(Event {
            at: now,
            kind: EventKind::IncidentOpened,
            run: Some(bad.run_id),
            environment: Some(bad.environment.clone()),
            message: format!(
                "CRITICAL: {} was not rolled back automatically: {why}",
                bad.environment
            ),
            data: json!({
                "event": "incident_opened",
                "severity": "critical",
                "title": "Rollback-unsafe deployment not rolled back",
                "environment": bad.environment,
                "version": bad.version,
                "deploymentId": bad.deployment_id,
                "reason": why,
                "rollbackUnsafe": true,
                "unsafeDeployments": unsafe_found,
                "level": level,
                "rollbackReason": rec.reason,
                "timestamp": iso8601(now),
            }),
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RunId;

    fn dep(env: &str, version: &str, t: i64, status: DeploymentStatus) -> DeploymentRecord {
        DeploymentRecord {
            deployment_id: format!("{env}#{t}"),
            environment: env.into(),
            version: version.into(),
            status,
            start_time: t,
            end_time: Some(t + 1),
            infrastructure_changed: false,
            commit_message: String::new(),
            commit_author: String::new(),
            pipeline_execution_id: "run-1".into(),
            unit_tests_passed: true,
            integration_tests_passed: true,
            e2e_tests_passed: true,
            coverage_percentage: 90.0,
            rollback_reason: None,
            rollback_level: None,
            rollback_time: None,
            artifact_location: format!("/a/{version}.tar"),
            expires_at: 0,
            run_id: RunId(1),
            artifact_digest: format!("sha256:{version}"),
            previous_version: None,
            config_digest: None,
            template_digests: Default::default(),
            rollback_unsafe: false,
            rollback_unsafe_reason: None,
        }
    }

    use DeploymentStatus::{Failed as F, Succeeded as S};

    #[test]
    fn stage_level_goes_to_the_newest_earlier_success_of_another_version() {
        let h = vec![
            dep("staging", "a", 1, S),
            dep("staging", "b", 2, S),
            dep("staging", "b", 3, S),
            dep("staging", "c", 4, F),
        ];
        let t = stage_target(&h[3], &h).map(|t| t.set.version);
        assert_eq!(t.as_deref(), Some("b"));
        // Re-deploying b and failing: back to a, not to b itself.
        let bad = dep("staging", "b", 5, F);
        assert_eq!(
            stage_target(&bad, &h).map(|t| t.set.version).as_deref(),
            Some("a")
        );
        assert!(stage_target(&dep("test", "x", 9, F), &h).is_none());
    }

    #[test]
    fn full_level_finds_the_newest_version_that_succeeded_everywhere() {
        let order: Vec<String> = ["test", "staging", "production"].map(String::from).to_vec();
        let h = vec![
            dep("test", "a", 1, S),
            dep("staging", "a", 2, S),
            dep("production", "a", 3, S),
            dep("test", "b", 4, S),
            dep("staging", "b", 5, S),
            dep("production", "b", 6, F),
            dep("test", "c", 7, S),
            dep("staging", "c", 8, F),
        ];
        let t = full_targets(&order, &h, "c").unwrap_or_default();
        let envs: Vec<&str> = t.iter().map(|t| t.environment.as_str()).collect();
        assert_eq!(envs, ["production", "staging", "test"]);
        assert!(t.iter().all(|t| t.set.version == "a"));
        assert!(full_targets(&order, &h[3..], "c").is_err());
        // Never back to the version being rolled back.
        assert!(full_targets(&order, &h[..3], "a").is_err());
    }

    #[test]
    fn manual_targets_must_have_succeeded_there() {
        let h = vec![
            dep("production", "aaaaaaaa1", 1, S),
            dep("production", "bbbbbbbb2", 2, F),
        ];
        assert!(manual_target("production", "aaaaaaaa", &h).is_ok());
        let e = manual_target("production", "bbbbbbbb2", &h)
            .err()
            .unwrap_or_default();
        assert!(
            e.contains("never succeeded") && e.contains("aaaaaaaa1"),
            "{e}"
        );
    }
}
